package authn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sextant-mesh/sextant/ca/spiffe"
)

// TokenFile authenticates static bearer tokens listed in a file, for
// development without Kubernetes: one "token namespace serviceaccount" per
// line; blank lines and lines starting with '#' are ignored.
type TokenFile struct {
	path   string
	tokens map[[sha256.Size]byte]spiffe.ID // keyed by hash: no token in memory dumps of the map keys, and lookups do not leak token prefixes
}

// NewTokenFile reads path. Errors name the file and line.
func NewTokenFile(path, trustDomain string) (*TokenFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t := &TokenFile{path: path, tokens: map[[sha256.Size]byte]spiffe.ID{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("%s:%d: want \"token namespace serviceaccount\", got %d fields", path, n, len(f))
		}
		id, err := spiffe.New(trustDomain, f[1], f[2])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		h := sha256.Sum256([]byte(f[0]))
		if _, dup := t.tokens[h]; dup {
			return nil, fmt.Errorf("%s:%d: token listed twice", path, n)
		}
		t.tokens[h] = id
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(t.tokens) == 0 {
		return nil, fmt.Errorf("%s: no tokens", path)
	}
	return t, nil
}

// Name implements Authenticator.
func (t *TokenFile) Name() string { return "token-file" }

// Authenticate implements Authenticator.
func (t *TokenFile) Authenticate(ctx context.Context) (*Caller, error) {
	tok, err := BearerToken(ctx)
	if err != nil {
		return nil, err
	}
	id, ok := t.tokens[sha256.Sum256([]byte(tok))]
	if !ok {
		return nil, errors.New("bearer token is not in the token file")
	}
	return &Caller{Identity: id, Method: t.Name()}, nil
}
