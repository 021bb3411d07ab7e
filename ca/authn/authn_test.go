package authn_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/sextant-mesh/sextant/ca/authn"
	"github.com/sextant-mesh/sextant/ca/catest"
	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/ca/spiffe"
	"github.com/sextant-mesh/sextant/ca/trust"
)

const td = "cluster.local"

func bearer(tok string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
}

func TestJWT(t *testing.T) {
	dir := t.TempDir()
	kube := catest.NewJWTIssuer(t, dir, "https://kubernetes.default.svc.cluster.local")
	other := catest.NewJWTIssuer(t, dir, "https://other.example.com")
	untrusted := catest.NewJWTIssuer(t, dir, "https://untrusted.example.com")
	j, err := authn.NewJWT([]authn.JWTIssuer{{Issuer: kube.Issuer, JWKSFile: kube.JWKSFile}, {Issuer: other.Issuer, JWKSFile: other.JWKSFile}},
		authn.JWTOptions{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	want := spiffe.ID{TrustDomain: td, Namespace: "default", ServiceAccount: "sleep"}
	for _, tc := range []struct {
		name    string
		tok     string
		wantErr string
		noCreds bool
	}{
		{name: "kubernetes claims", tok: kube.KubeToken(t, "default", "sleep")},
		{name: "sub only", tok: kube.Token(t, catest.Claims{Subject: "system:serviceaccount:default:sleep"})},
		{name: "second issuer", tok: other.KubeToken(t, "default", "sleep")},
		{name: "several audiences", tok: kube.Token(t, catest.Claims{Subject: "system:serviceaccount:default:sleep", Audience: []string{"api", "istio-ca"}})},
		{name: "expired", tok: kube.Token(t, catest.Claims{Subject: "system:serviceaccount:default:sleep", Expiry: now.Add(-time.Hour), IssuedAt: now.Add(-2 * time.Hour)}),
			wantErr: "token expired"},
		{name: "no expiry", tok: kube.Token(t, catest.Claims{Subject: "system:serviceaccount:default:sleep", NoExpiry: true}), wantErr: "no expiry"},
		{name: "not yet valid", tok: kube.Token(t, catest.Claims{Subject: "system:serviceaccount:default:sleep", NotBefore: now.Add(time.Hour)}),
			wantErr: "not valid before"},
		{name: "wrong audience", tok: kube.Token(t, catest.Claims{Subject: "system:serviceaccount:default:sleep", Audience: []string{"api"}}),
			wantErr: `does not include ["istio-ca"]`},
		{name: "untrusted issuer", tok: untrusted.KubeToken(t, "default", "sleep"), wantErr: "is not trusted"},
		// Claims to be the trusted issuer, signed by another key.
		{name: "forged", tok: untrusted.Token(t, catest.Claims{Issuer: kube.Issuer, Subject: "system:serviceaccount:default:sleep"}),
			wantErr: "no key with kid"},
		{name: "user, not a service account", tok: kube.Token(t, catest.Claims{Subject: "alice@example.com"}), wantErr: "not a service account"},
		{name: "malformed", tok: "a.b.c", wantErr: "malformed JWT"},
		{name: "opaque token", tok: "not-a-jwt", noCreds: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := j.Authenticate(bearer(tc.tok))
			switch {
			case tc.noCreds:
				if !errors.Is(err, authn.ErrNoCredentials) {
					t.Fatalf("err %v, want ErrNoCredentials", err)
				}
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), tc.tok) {
					t.Error("error contains the token")
				}
			case err != nil:
				t.Fatal(err)
			case c.Identity != want:
				t.Errorf("identity %v, want %v", c.Identity, want)
			}
		})
	}
	if _, err := j.Authenticate(context.Background()); !errors.Is(err, authn.ErrNoCredentials) {
		t.Errorf("no metadata: %v", err)
	}
}

func TestJWTForgedSameKid(t *testing.T) {
	dir := t.TempDir()
	kube := catest.NewJWTIssuer(t, dir, "https://kube")
	// The attacker signs with its own key under the trusted issuer and kid.
	attacker := catest.NewJWTIssuer(t, t.TempDir(), "https://kube")
	attacker.Kid = kube.Kid
	j, err := authn.NewJWT([]authn.JWTIssuer{{Issuer: kube.Issuer, JWKSFile: kube.JWKSFile}}, authn.JWTOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = j.Authenticate(bearer(attacker.KubeToken(t, "default", "sleep")))
	if err == nil || !strings.Contains(err.Error(), "signature does not verify") {
		t.Fatalf("forged token: %v", err)
	}
}

func TestJWKSErrorsAndReload(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o644)
	sym := filepath.Join(dir, "sym.json")
	os.WriteFile(sym, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`), 0o644)
	for _, f := range []string{bad, sym, filepath.Join(dir, "missing.json")} {
		if _, err := authn.NewJWT([]authn.JWTIssuer{{Issuer: "i", JWKSFile: f}}, authn.JWTOptions{}); err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("%s: err %v, want one naming the file", f, err)
		}
	}
	for _, in := range []string{"noequals", "=file", "issuer="} {
		if _, err := authn.ParseJWTIssuer(in); err == nil {
			t.Errorf("ParseJWTIssuer(%q) succeeded", in)
		}
	}
	if got, err := authn.ParseJWTIssuer("https://x/?a=b=/etc/jwks.json"); err != nil || got.Issuer != "https://x/?a=b" || got.JWKSFile != "/etc/jwks.json" {
		t.Errorf("ParseJWTIssuer: %+v %v", got, err)
	}

	// Key rotation at the issuer: the JWKS file is replaced and picked up.
	clk := time.Now()
	iss := catest.NewJWTIssuer(t, dir, "https://rotating")
	j, err := authn.NewJWT([]authn.JWTIssuer{{Issuer: iss.Issuer, JWKSFile: iss.JWKSFile}}, authn.JWTOptions{Now: func() time.Time { return clk }})
	if err != nil {
		t.Fatal(err)
	}
	next := catest.NewJWTIssuer(t, t.TempDir(), "https://rotating")
	b, _ := os.ReadFile(next.JWKSFile)
	os.WriteFile(iss.JWKSFile, b, 0o644)
	later := time.Now().Add(time.Hour) // coarse file-system clocks: make the change visible
	os.Chtimes(iss.JWKSFile, later, later)
	clk = clk.Add(time.Minute)
	if _, err := j.Authenticate(bearer(next.KubeToken(t, "default", "sleep"))); err != nil {
		t.Errorf("after JWKS rotation: %v", err)
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "tokens")
	os.WriteFile(f, []byte("# dev tokens\n\ns3cret default sleep\nother prod api\n"), 0o600)
	tf, err := authn.NewTokenFile(f, td)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tf.Authenticate(bearer("s3cret"))
	if err != nil || c.Identity.String() != "spiffe://cluster.local/ns/default/sa/sleep" {
		t.Fatalf("%v %v", c, err)
	}
	if _, err := tf.Authenticate(bearer("wrong")); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("unknown token: %v", err)
	}
	for name, content := range map[string]string{
		"fields": "tok default\n",
		"ns":     "tok Default sleep\n",
		"dup":    "tok a b\ntok c d\n",
		"empty":  "# nothing\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := authn.NewTokenFile(p, td); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err %v, want one naming the file", name, err)
		}
	}
}

func tlsPeer(certs ...*x509.Certificate) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: certs}}})
}

func TestClientCert(t *testing.T) {
	newIss := func(dir string) *issuer.Issuer {
		s, err := trust.Open(dir, trust.Options{})
		if err != nil {
			t.Fatal(err)
		}
		iss, err := issuer.New(s, issuer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	iss := newIss(t.TempDir())
	cc := authn.NewClientCert(td, iss)
	id := spiffe.ID{TrustDomain: td, Namespace: "default", ServiceAccount: "sleep"}
	got, err := iss.Issue(context.Background(), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cc.Authenticate(tlsPeer(got.Leaf))
	if err != nil || c.Identity != id {
		t.Fatalf("%v %v", c, err)
	}
	if _, err := cc.Authenticate(context.Background()); !errors.Is(err, authn.ErrNoCredentials) {
		t.Errorf("no peer: %v", err)
	}
	if _, err := cc.Authenticate(tlsPeer()); !errors.Is(err, authn.ErrNoCredentials) {
		t.Errorf("no client cert: %v", err)
	}
	foreign, err := newIss(t.TempDir()).Issue(context.Background(), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Authenticate(tlsPeer(foreign.Leaf)); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("certificate of another CA: %v", err)
	}
	// The secure port's server certificate has no SPIFFE identity.
	sc, err := iss.NewServingCert(nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := sc.Leaf()
	if _, err := cc.Authenticate(tlsPeer(leaf)); err == nil {
		t.Error("server certificate accepted as a client identity")
	}
}

type fakeReviewer map[string]string

func (f fakeReviewer) ReviewToken(_ context.Context, tok string, aud []string) (string, error) {
	if len(aud) != 1 || aud[0] != "istio-ca" {
		return "", errors.New("bad audiences")
	}
	if u, ok := f[tok]; ok {
		return u, nil
	}
	return "", authn.ErrReviewRejected
}

func TestChainAndKubeJWT(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "tokens")
	os.WriteFile(f, []byte("dev default dev\n"), 0o600)
	tf, err := authn.NewTokenFile(f, td)
	if err != nil {
		t.Fatal(err)
	}
	kube := authn.NewKubeJWT(fakeReviewer{"k8s": "system:serviceaccount:prod:api", "node": "system:node:n1"}, td, nil)
	chain := authn.Chain{kube, tf}

	c, err := chain.Authenticate(bearer("k8s"))
	if err != nil || c.Identity.NamespacedName() != "prod/api" || c.Method != "kube-jwt" {
		t.Fatalf("kube: %+v %v", c, err)
	}
	c, err = chain.Authenticate(bearer("dev"))
	if err != nil || c.Identity.NamespacedName() != "default/dev" || c.Method != "token-file" {
		t.Fatalf("token file: %+v %v", c, err)
	}
	_, err = chain.Authenticate(bearer("node"))
	if !errors.Is(err, authn.ErrNoIdentity) {
		t.Errorf("node user: %v, want ErrNoIdentity", err)
	}
	_, err = chain.Authenticate(bearer("nope"))
	if err == nil || !strings.Contains(err.Error(), "kube-jwt: TokenReview: token rejected") || !strings.Contains(err.Error(), "token-file:") {
		t.Errorf("bad token: %v", err)
	}
	_, err = chain.Authenticate(context.Background())
	if !errors.Is(err, authn.ErrNoCredentials) || !strings.Contains(err.Error(), "tried kube-jwt, token-file") {
		t.Errorf("no credentials: %v", err)
	}
	md := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Basic dXNlcjpwYXNz"))
	if _, err := authn.BearerToken(md); !errors.Is(err, authn.ErrNoCredentials) {
		t.Errorf("basic auth: %v", err)
	}
}
