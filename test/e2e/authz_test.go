package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	xdsgrpc "google.golang.org/grpc/xds"

	xdscreds "google.golang.org/grpc/credentials/xds"

	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/ca/spiffe"
	"github.com/sextant-mesh/sextant/ca/trust"
	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

const authzHost = "echo-authz.default.svc.cluster.local"

// workloadFiles writes what istio-agent writes for proxyless gRPC: the
// certificate chain, key and roots that grpc-go's file_watcher certificate
// provider "default" reads. It returns the directory.
func workloadFiles(t *testing.T, iss *issuer.Issuer, sa string) string {
	t.Helper()
	c, err := iss.Issue(context.Background(), spiffe.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: sa}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), sa)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"cert-chain.pem": c.CertChainPEM, "key.pem": c.KeyPEM, "root-cert.pem": c.RootsPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// proxylessBootstrap is istio-agent's gRPC bootstrap: Sextant as the xDS
// server, Istio's node id and metadata, the server listener name template
// and the file_watcher certificate provider "default".
func proxylessBootstrap(addr, pod, sa, certDir string, labels map[string]string) []byte {
	b, _ := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      addr,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []any{"xds_v3"},
		}},
		"node": map[string]any{
			"id": "sidecar~127.0.0.1~" + pod + ".default~default.svc.cluster.local",
			"metadata": map[string]any{
				"GENERATOR": "grpc", "NAMESPACE": "default", "SERVICE_ACCOUNT": sa,
				"INSTANCE_IPS": "127.0.0.1", "LABELS": labels, "ISTIO_VERSION": "1.32.0",
			},
		},
		"server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s",
		"certificate_providers": map[string]any{"default": map[string]any{
			"plugin_name": "file_watcher",
			"config": map[string]any{
				"certificate_file":    filepath.Join(certDir, "cert-chain.pem"),
				"private_key_file":    filepath.Join(certDir, "key.pem"),
				"ca_certificate_file": filepath.Join(certDir, "root-cert.pem"),
				"refresh_interval":    "600s",
			},
		}},
	})
	return b
}

type authzClient struct {
	name string
	tc   testgrpc.TestServiceClient
}

func (c authzClient) unary() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := c.tc.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	return err
}

func (c authzClient) empty() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := c.tc.EmptyCall(ctx, &testgrpc.Empty{})
	return err
}

func dialProxyless(t *testing.T, addr, pod, sa, certDir string) authzClient {
	t.Helper()
	res, err := xdsgrpc.NewXDSResolverWithConfigForTesting(proxylessBootstrap(addr, pod, sa, certDir, map[string]string{"app": pod}))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+authzHost+":7070", grpc.WithResolvers(res), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return authzClient{name: sa, tc: testgrpc.NewTestServiceClient(cc)}
}

// expect reports how err differs from want (codes.OK: success).
func expect(who string, err error, want codes.Code) string {
	if got := status.Code(err); got != want {
		return fmt.Sprintf("%s: got %v (%v), want %v", who, got, err, want)
	}
	return ""
}

// TestAuthzProxylessServer runs a grpc-go xDS server and xDS clients with
// workload certificates from Sextant's CA: mTLS STRICT and Sextant's RBAC
// decide who may call what.
func TestAuthzProxylessServer(t *testing.T) {
	store, err := trust.Open(filepath.Join(t.TempDir(), "ca"), trust.Options{})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(store, issuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	serverCerts := workloadFiles(t, iss, "server")

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	mesh := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo-authz, namespace: default}
spec:
  hosts: [%s]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 7070, name: grpc, protocol: GRPC}]
  endpoints:
  - {address: 127.0.0.1, ports: {grpc: %d}, serviceAccount: server, labels: {app: server}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo-authz, namespace: default}
spec:
  host: %s
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: STRICT}
`, authzHost, port, authzHost)
	testenv.WriteFile(t, filepath.Join(dir, "mesh.yaml"), mesh)
	writePolicy := func(content string) { testenv.WriteFile(t, filepath.Join(dir, "policy.yaml"), content) }
	writePolicy(allowOnly("client-a"))
	env := testenv.Start(t, dir, testenv.Options{})

	screds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := xdsgrpc.NewGRPCServer(grpc.Creds(screds),
		xdsgrpc.BootstrapContentsForTesting(proxylessBootstrap(env.Addr, "server", "server", serverCerts, map[string]string{"app": "server"})))
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, &authzEcho{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	a := dialProxyless(t, env.Addr, "client-a", "client-a", workloadFiles(t, iss, "client-a"))
	b := dialProxyless(t, env.Addr, "client-b", "client-b", workloadFiles(t, iss, "client-b"))

	const converge = 15 * time.Second
	testenv.Eventually(t, converge, func() string {
		return expect("client-a", a.unary(), codes.OK) + expect(" client-b", b.unary(), codes.PermissionDenied)
	})

	// What the server was sent, as config_dump (and sextantctl authz check)
	// show it: its inbound listener, mTLS from provider "default", and the
	// ALLOW rule under istiod's gRPC name.
	// protojson varies its spacing on purpose: compare without spaces.
	dump := strings.Join(strings.Fields(env.Get(t, "/debug/config_dump?proxyID=server.default")), "")
	for _, want := range []string{fmt.Sprintf("xds.istio.io/grpc/lds/inbound/127.0.0.1:%d", port), `"instance_name":"default"`, "default-allow-one-0", `"require_client_certificate":true`} {
		if !strings.Contains(dump, want) {
			t.Errorf("server's config_dump lacks %s:\n%.3000s", want, dump)
		}
	}

	t.Run("deny one method", func(t *testing.T) {
		writePolicy(allowOnly("client-a") + `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-empty, namespace: default}
spec:
  selector: {matchLabels: {app: server}}
  action: DENY
  rules:
  - to:
    - operation: {paths: [/grpc.testing.TestService/EmptyCall]}
`)
		testenv.Eventually(t, converge, func() string {
			return expect("client-a EmptyCall", a.empty(), codes.PermissionDenied) + expect(" client-a UnaryCall", a.unary(), codes.OK)
		})
	})

	t.Run("change the policy", func(t *testing.T) {
		writePolicy(allowOnly("client-b"))
		testenv.Eventually(t, converge, func() string {
			return expect("client-b", b.unary(), codes.OK) + expect(" client-a", a.unary(), codes.PermissionDenied) +
				expect(" client-b EmptyCall", b.empty(), codes.OK)
		})
	})

	t.Run("CUSTOM with an unknown provider fails closed", func(t *testing.T) {
		writePolicy(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  selector: {matchLabels: {app: server}}
  action: CUSTOM
  provider: {name: nobody}
  rules:
  - to:
    - operation: {paths: [/grpc.testing.TestService/UnaryCall]}
`)
		testenv.Eventually(t, converge, func() string {
			return expect("client-a UnaryCall", a.unary(), codes.PermissionDenied) + expect(" client-a EmptyCall", a.empty(), codes.OK)
		})
		var ce struct {
			Translation []string `json:"translation"`
		}
		env.GetJSON(t, "/debug/config_errors", &ce)
		if !strings.Contains(strings.Join(ce.Translation, "\n"), `AuthorizationPolicy default/ext: action CUSTOM, provider "nobody"`) {
			t.Errorf("/debug/config_errors does not report the policy: %v", ce.Translation)
		}
		if m := env.Get(t, "/metrics"); !strings.Contains(m, "sextant_translate_errors 1") {
			t.Errorf("sextant_translate_errors is not 1")
		}
	})

	t.Run("remove the policy", func(t *testing.T) {
		if err := os.Remove(filepath.Join(dir, "policy.yaml")); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, converge, func() string {
			return expect("client-a", a.unary(), codes.OK) + expect(" client-b", b.unary(), codes.OK)
		})
	})

	t.Run("no client certificate", func(t *testing.T) {
		addr := lis.Addr().String()
		plain, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		// No policy is left: only the missing certificate can refuse these.
		if msg := expect("plaintext client", authzClient{tc: testgrpc.NewTestServiceClient(plain)}.unary(), codes.Unavailable); msg != "" {
			t.Error(msg)
		}
		// TLS that trusts the server but presents no certificate.
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(store.Current().RootsPEM())
		noCert, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: roots, MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, //nolint:gosec // only the client certificate is under test
		})))
		if err != nil {
			t.Fatal(err)
		}
		defer noCert.Close()
		if msg := expect("TLS client without a certificate", authzClient{tc: testgrpc.NewTestServiceClient(noCert)}.unary(), codes.Unavailable); msg != "" {
			t.Error(msg)
		}
	})
}

func allowOnly(sa string) string {
	return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-one, namespace: default}
spec:
  selector: {matchLabels: {app: server}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: [cluster.local/ns/default/sa/` + sa + `]}
`
}

type authzEcho struct {
	testgrpc.UnimplementedTestServiceServer
}

func (authzEcho) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: "server"}, nil
}

func (authzEcho) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// TestAuthzInboundClaims: on the secure port, a proxy authenticated in
// namespace team-a that claims the IP of a default-namespace workload gets
// no inbound config for it; nor does one of default authenticated as
// another service account. The workload's own identity does.
func TestAuthzInboundClaims(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "mesh.yaml"), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.7.0.1, serviceAccount: reviews}]
`)
	env := testenv.Start(t, dir, testenv.Options{})
	ca := startSecureCA(t, env.Server, trust.Options{})
	inbound := func(ns, sa string) []string {
		cert, _ := ca.workloadCert(t, ca.dial(t, nil), ns, sa, bearer(ca.kube.KubeToken(t, ns, sa)))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c, err := adsclient.Start(ctx, ca.dial(t, &cert), adsclient.Node("10.7.0.1", sa+"-1", ns, "", nil),
			adsclient.Options{Types: []string{translate.ClusterType}})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		testenv.Eventually(t, 5*time.Second, func() string {
			cls := c.Resources(translate.ClusterType)
			if cls[translate.InboundPassthroughCluster] == nil {
				return fmt.Sprintf("%s/%s: CDS not received (stream: %v)", ns, sa, c.Err())
			}
			out = nil
			for name := range cls {
				if strings.HasPrefix(name, "inbound|") {
					out = append(out, name)
				}
			}
			return ""
		})
		return out
	}
	if got := inbound("default", "reviews"); len(got) != 1 || got[0] != "inbound|9080||" {
		t.Errorf("the workload's own identity: inbound clusters %v, want [inbound|9080||]", got)
	}
	if got := inbound("team-a", "intruder"); len(got) != 0 {
		t.Errorf("team-a claiming default's IP got %v", got)
	}
	if got := inbound("default", "ratings"); len(got) != 0 {
		t.Errorf("another service account of default got %v", got)
	}
}

// TestAuthzJWKSFetched: a RequestAuthentication's jwksUri is fetched by
// Sextant (the fetcher serve runs) and its keys reach the sidecar inlined in
// jwt_authn. Until a fetch succeeds the sidecar gets keys that refuse every
// token. (Refresh and retry timing are unit-tested in discovery/jwks.)
func TestAuthzJWKSFetched(t *testing.T) {
	var keys atomic.Value
	keys.Store(`{"keys":[{"kty":"oct","kid":"first"}]}`)
	var up atomic.Bool
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, keys.Load().(string))
	}))
	defer jwks.Close()
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "mesh.yaml"), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.7.0.2, labels: {app: reviews}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - {issuer: "https://issuer.example", jwksUri: "`+jwks.URL+`/keys"}
`)
	env := testenv.Start(t, dir, testenv.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := adsclient.Start(ctx, dial(t, env.Addr), adsclient.Node("10.7.0.2", "reviews", "default", "", map[string]string{"app": "reviews"}), adsclient.Options{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	inlined := func() string {
		a := c.Resources(translate.ListenerType)[translate.VirtualInbound]
		if a == nil {
			return ""
		}
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			t.Fatal(err)
		}
		for _, fc := range l.GetFilterChains() {
			if fc.GetName() != "inbound|9080||" {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatal(err)
			}
			for _, f := range hcm.GetHttpFilters() {
				if f.GetName() == translate.JWTAuthnFilter {
					j := &jwtv3.JwtAuthentication{}
					if err := f.GetTypedConfig().UnmarshalTo(j); err != nil {
						t.Fatal(err)
					}
					return j.GetProviders()["origins-0"].GetLocalJwks().GetInlineString()
				}
			}
		}
		return ""
	}
	testenv.Eventually(t, 10*time.Second, func() string {
		if got := inlined(); got != translate.FailedJWKS {
			return "before the provider answers, want the key set that refuses tokens; got " + got
		}
		return ""
	})
	up.Store(true)
	testenv.Eventually(t, 30*time.Second, func() string {
		if got := inlined(); !strings.Contains(got, `"kid":"first"`) {
			return "fetched keys not pushed yet; got " + got
		}
		return ""
	})
}
