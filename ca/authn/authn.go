package authn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/sextant-mesh/sextant/ca/spiffe"
)

// Caller is an authenticated caller.
type Caller struct {
	Identity spiffe.ID
	// Method is the Name of the authenticator that succeeded.
	Method string
}

// Authenticator authenticates the gRPC call in a context.
type Authenticator interface {
	// Name identifies the authenticator in errors and logs.
	Name() string
	// Authenticate returns the call's caller. When the call carries no
	// credential of this authenticator's kind, the error wraps
	// ErrNoCredentials so that the next authenticator is tried quietly.
	Authenticate(ctx context.Context) (*Caller, error)
}

var (
	// ErrNoCredentials: the call carries no credential of this kind.
	ErrNoCredentials = errors.New("no credentials")
	// ErrNoIdentity: the credential is valid but names no workload
	// identity (Istio's citadel_server_id_extraction_err_count).
	ErrNoIdentity = errors.New("no workload identity in credential")
)

// Chain tries authenticators in order; the first success wins.
type Chain []Authenticator

// Authenticate runs the chain. When every authenticator fails, the error is
// a *ChainError listing why (authenticators that found no credential of
// their kind are left out unless all did).
func (c Chain) Authenticate(ctx context.Context) (*Caller, error) {
	var errs []error
	for _, a := range c {
		caller, err := a.Authenticate(ctx)
		if err == nil {
			if caller.Method == "" {
				caller.Method = a.Name()
			}
			return caller, nil
		}
		if !errors.Is(err, ErrNoCredentials) {
			errs = append(errs, fmt.Errorf("%s: %w", a.Name(), err))
		}
	}
	if len(errs) == 0 {
		names := make([]string, len(c))
		for i, a := range c {
			names[i] = a.Name()
		}
		return nil, &ChainError{Errs: []error{fmt.Errorf("%w: the call carries none this server accepts (tried %s)", ErrNoCredentials, strings.Join(names, ", "))}}
	}
	return nil, &ChainError{Errs: errs}
}

// ChainError is every failure of a Chain.
type ChainError struct{ Errs []error }

func (e *ChainError) Error() string {
	parts := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap lets errors.Is see ErrNoCredentials and ErrNoIdentity.
func (e *ChainError) Unwrap() []error { return e.Errs }

// BearerToken returns the token of the call's "authorization: Bearer <token>"
// metadata. Without one the error wraps ErrNoCredentials.
func BearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", fmt.Errorf("%w: no authorization metadata", ErrNoCredentials)
	}
	for _, v := range vals {
		scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
		if ok && strings.EqualFold(scheme, "bearer") {
			if tok = strings.TrimSpace(tok); tok != "" {
				return tok, nil
			}
		}
	}
	return "", fmt.Errorf("%w: authorization metadata is not \"Bearer <token>\"", ErrNoCredentials)
}
