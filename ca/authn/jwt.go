package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go.step.sm/crypto/jose"

	"github.com/sextant-mesh/sextant/ca/spiffe"
	"github.com/sextant-mesh/sextant/internal/filestamp"
)

// DefaultAudience is the audience istio-agent's token is minted for
// (Istio's TOKEN_AUDIENCES default).
const DefaultAudience = "istio-ca"

// jwksRecheck bounds how often a JWKS file is checked for changes.
const jwksRecheck = 10 * time.Second

// JWTIssuer trusts the JWTs of Issuer, verified with the JWKS in JWKSFile.
type JWTIssuer struct {
	Issuer   string
	JWKSFile string
}

// ParseJWTIssuer parses a --jwt-issuer value, ISSUER=JWKS_FILE. The split
// is at the last '=', since issuer URLs may hold '=' and file paths rarely do.
func ParseJWTIssuer(s string) (JWTIssuer, error) {
	i := strings.LastIndex(s, "=")
	if i <= 0 || i == len(s)-1 {
		return JWTIssuer{}, fmt.Errorf("--jwt-issuer %q: want ISSUER=JWKS_FILE", s)
	}
	return JWTIssuer{Issuer: s[:i], JWKSFile: s[i+1:]}, nil
}

// JWTOptions configure a JWT authenticator.
type JWTOptions struct {
	// TrustDomain of the identities derived from tokens. Default cluster.local.
	TrustDomain string
	// Audiences: a token must name at least one. Default [istio-ca].
	Audiences []string
	// Leeway for exp, nbf and iat. Default 1 minute (go-jose's).
	Leeway time.Duration
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// JWT authenticates bearer JWTs from trusted issuers.
type JWT struct {
	opts    JWTOptions
	issuers map[string]*jwks
}

// NewJWT loads every issuer's JWKS; a missing or unusable file is an
// error naming it.
func NewJWT(issuers []JWTIssuer, o JWTOptions) (*JWT, error) {
	if o.TrustDomain == "" {
		o.TrustDomain = "cluster.local"
	}
	if len(o.Audiences) == 0 {
		o.Audiences = []string{DefaultAudience}
	}
	if o.Leeway <= 0 {
		o.Leeway = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	j := &JWT{opts: o, issuers: map[string]*jwks{}}
	for _, is := range issuers {
		if is.Issuer == "" || is.JWKSFile == "" {
			return nil, fmt.Errorf("JWT issuer %q with JWKS file %q: both are required", is.Issuer, is.JWKSFile)
		}
		if _, dup := j.issuers[is.Issuer]; dup {
			return nil, fmt.Errorf("JWT issuer %q configured twice", is.Issuer)
		}
		keys, err := loadJWKS(is.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("JWT issuer %q: %w", is.Issuer, err)
		}
		j.issuers[is.Issuer] = &jwks{path: is.JWKSFile, keys: keys, stamp: stampOf(is.JWKSFile), checked: o.Now(),
			log: o.Logger.With("issuer", is.Issuer, "jwks", is.JWKSFile)}
	}
	return j, nil
}

// Name implements Authenticator.
func (j *JWT) Name() string { return "jwt" }

// Authenticate implements Authenticator.
func (j *JWT) Authenticate(ctx context.Context) (*Caller, error) {
	tok, err := BearerToken(ctx)
	if err != nil {
		return nil, err
	}
	id, err := j.Verify(tok)
	if err != nil {
		return nil, err
	}
	return &Caller{Identity: id, Method: j.Name()}, nil
}

// Verify checks a JWT (signature with the issuer's JWKS, issuer, audience,
// exp/nbf/iat) and returns the service-account identity it carries.
func (j *JWT) Verify(token string) (spiffe.ID, error) {
	tok, err := jose.ParseSigned(token)
	if err != nil {
		if strings.Count(token, ".") != 2 {
			// Not a JWT at all (an opaque token for another
			// authenticator): let the chain move on quietly.
			return spiffe.ID{}, fmt.Errorf("%w: bearer token is not a JWT", ErrNoCredentials)
		}
		return spiffe.ID{}, fmt.Errorf("malformed JWT: %v", jose.TrimPrefix(err))
	}
	var unverified jose.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return spiffe.ID{}, fmt.Errorf("malformed JWT claims: %v", jose.TrimPrefix(err))
	}
	src, ok := j.issuers[unverified.Issuer]
	if !ok {
		return spiffe.ID{}, fmt.Errorf("issuer %.100q is not trusted (see --jwt-issuer)", unverified.Issuer)
	}
	var kid string
	if len(tok.Headers) > 0 {
		kid = tok.Headers[0].KeyID
	}
	var (
		claims jose.Claims
		kube   kubeClaims
	)
	keys := src.candidates(kid, j.opts.Now())
	if len(keys) == 0 {
		return spiffe.ID{}, fmt.Errorf("issuer %q: no key with kid %.64q in its JWKS", unverified.Issuer, kid)
	}
	verified := false
	for _, k := range keys {
		if k.Algorithm != "" && len(tok.Headers) > 0 && tok.Headers[0].Algorithm != k.Algorithm {
			continue
		}
		if jose.Verify(tok, k.Key, &claims, &kube) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return spiffe.ID{}, fmt.Errorf("issuer %q: signature does not verify with its JWKS", unverified.Issuer)
	}
	if claims.Expiry == nil {
		return spiffe.ID{}, errors.New("token has no expiry (exp)")
	}
	err = claims.ValidateWithLeeway(jose.Expected{Issuer: unverified.Issuer, AnyAudience: j.opts.Audiences, Time: j.opts.Now()}, j.opts.Leeway)
	switch {
	case errors.Is(err, jose.ErrExpired):
		return spiffe.ID{}, fmt.Errorf("token expired at %s", claims.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jose.ErrInvalidAudience):
		return spiffe.ID{}, fmt.Errorf("token audience %q does not include %q", []string(claims.Audience), j.opts.Audiences)
	case errors.Is(err, jose.ErrNotValidYet):
		return spiffe.ID{}, fmt.Errorf("token not valid before %s", claims.NotBefore.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jose.ErrIssuedInTheFuture):
		return spiffe.ID{}, fmt.Errorf("token issued in the future (%s)", claims.IssuedAt.Time().UTC().Format(time.RFC3339))
	case err != nil:
		return spiffe.ID{}, fmt.Errorf("token claims: %v", err)
	}
	return kube.identity(j.opts.TrustDomain, claims.Subject)
}

// kubeClaims are the Kubernetes service-account claims of a projected token.
type kubeClaims struct {
	Kubernetes *struct {
		Namespace      string `json:"namespace"`
		ServiceAccount *struct {
			Name string `json:"name"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

func (k kubeClaims) identity(td, sub string) (spiffe.ID, error) {
	if k.Kubernetes != nil && k.Kubernetes.ServiceAccount != nil {
		id, err := spiffe.New(td, k.Kubernetes.Namespace, k.Kubernetes.ServiceAccount.Name)
		if err != nil {
			return spiffe.ID{}, fmt.Errorf("%w: kubernetes.io claims: %v", ErrNoIdentity, err)
		}
		return id, nil
	}
	id, err := spiffe.FromServiceAccountUser(td, sub)
	if err != nil {
		return spiffe.ID{}, fmt.Errorf("%w: no kubernetes.io claims, and %v", ErrNoIdentity, err)
	}
	return id, nil
}

// jwks is one issuer's key set, reloaded when its file changes.
type jwks struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	stamp   filestamp.Stamp
	checked time.Time
}

// candidates returns the keys to try for kid: those with that kid and
// those without one (all keys when kid is empty). It first reloads the file
// if it changed since the last check.
func (s *jwks) candidates(kid string, now time.Time) []jose.JSONWebKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.checked) >= jwksRecheck {
		s.checked = now
		if st := stampOf(s.path); st != s.stamp {
			keys, err := loadJWKS(s.path)
			if err != nil {
				s.log.Error("JWKS changed but does not load; keeping the previous keys", "err", err)
			} else {
				s.keys, s.stamp = keys, st
				s.log.Info("reloaded JWKS", "keys", len(keys))
			}
		}
	}
	if kid == "" {
		return s.keys
	}
	var out []jose.JSONWebKey
	for _, k := range s.keys {
		if k.KeyID == kid || k.KeyID == "" {
			out = append(out, k)
		}
	}
	return out
}

// loadJWKS reads a JWKS file ({"keys": [...]}) of public signing keys.
// Private keys are reduced to their public half; symmetric keys are refused.
func loadJWKS(path string) ([]jose.JSONWebKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%s: not a JWKS: %w", path, err)
	}
	var keys []jose.JSONWebKey
	for i, k := range set.Keys {
		if k.Use == "enc" {
			continue
		}
		if jose.IsSymmetric(&k) {
			return nil, fmt.Errorf("%s: key %d (kid %q) is symmetric; only public keys are accepted", path, i, k.KeyID)
		}
		if !k.IsPublic() {
			k = k.Public()
		}
		if !k.Valid() {
			return nil, fmt.Errorf("%s: key %d (kid %q) is not a valid public key", path, i, k.KeyID)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no signing keys", path)
	}
	return keys, nil
}

// stampOf stamps a JWKS file; a file that cannot be stat'ed has the zero
// stamp, so it reads as changed once it is back.
func stampOf(path string) filestamp.Stamp {
	st, _ := filestamp.Of(path)
	return st
}
