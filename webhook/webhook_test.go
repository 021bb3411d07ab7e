package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
)

// testCert makes a self-signed certificate for 127.0.0.1 and localhost.
func testCert(t testing.TB, cn string) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// env is a webhook served over real HTTPS.
type env struct {
	url    string
	client *http.Client
	reg    *prometheus.Registry
}

func start(t *testing.T) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, err := New(Options{Registry: reg, Logger: quietLogger(), MaxBodyBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	pair, certPEM, _ := testCert(t, "sextant-webhook-test")
	srv, err := Listen("127.0.0.1:0", h, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	t.Cleanup(client.CloseIdleConnections)
	return &env{url: "https://" + srv.Addr().String(), client: client, reg: reg}
}

// series returns the number of series of a metric family.
func series(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

// counter returns the value of the counter series with exactly the given
// label pairs (0 if there is none).
func counter(t *testing.T, reg *prometheus.Registry, name string, labelPairs ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labelPairs); i += 2 {
		want[labelPairs[i]] = labelPairs[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func (e *env) post(t *testing.T, path, contentType string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := e.client.Post(e.url+path, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// admit posts a review and returns its response.
func (e *env) admit(t *testing.T, review string) *admissionv1.AdmissionReview {
	t.Helper()
	code, body := e.post(t, Path, "application/json", []byte(review))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("decoding the response: %v\n%s", err, body)
	}
	if out.Response == nil {
		t.Fatalf("no response in %s", body)
	}
	return &out
}

// review builds an AdmissionReview for obj (JSON).
func review(op, kind, ns, name, obj string) string {
	if obj == "" {
		obj = "null"
	}
	return fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
"uid":"uid-%s","kind":{"group":"networking.istio.io","version":"v1","kind":%q},
"resource":{"group":"networking.istio.io","version":"v1","resource":"virtualservices"},
"namespace":%q,"name":%q,"operation":%q,"userInfo":{"username":"admin"},
"object":%s,"oldObject":null,"dryRun":false}}`, name, kind, ns, name, op, obj)
}

func virtualService(weights ...int) string {
	var routes []string
	for i, w := range weights {
		routes = append(routes, fmt.Sprintf(`{"destination":{"host":"echo.default.svc.cluster.local","subset":"v%d"},"weight":%d}`, i+1, w))
	}
	return `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService",
"metadata":{"name":"echo","namespace":"default"},
"spec":{"hosts":["echo.default.svc.cluster.local"],"http":[{"route":[` + strings.Join(routes, ",") + `]}]}}`
}

func TestValidVirtualServiceAllowed(t *testing.T) {
	e := start(t)
	out := e.admit(t, review("CREATE", "VirtualService", "default", "echo", virtualService(90, 10)))
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
		t.Errorf("response is %s %s, want admission.k8s.io/v1 AdmissionReview", out.APIVersion, out.Kind)
	}
	if out.Response.UID != "uid-echo" {
		t.Errorf("uid = %q, want the request's", out.Response.UID)
	}
	if !out.Response.Allowed || len(out.Response.Warnings) != 0 {
		t.Errorf("allowed=%v warnings=%v, want allowed without warnings (%v)", out.Response.Allowed, out.Response.Warnings, out.Response.Result)
	}
	// The trailing-slash form Istio's configuration may use.
	code, body := e.post(t, Path+"/", "application/json", []byte(review("UPDATE", "VirtualService", "default", "echo", virtualService(100))))
	if code != http.StatusOK || !strings.Contains(string(body), `"allowed":true`) {
		t.Errorf("POST %s/: %d %s", Path, code, body)
	}
	if got := counter(t, e.reg, "galley_validation_passed", "kind", "VirtualService"); got != 2 {
		t.Errorf("galley_validation_passed{kind=VirtualService} = %v, want 2", got)
	}
}

func TestInvalidDenied(t *testing.T) {
	e := start(t)
	for _, tc := range []struct {
		name, obj string
		// want are substrings of the message; field is the first cause's field.
		want  []string
		field string
	}{
		{
			name:  "weights",
			obj:   virtualService(90, 20),
			want:  []string{"configuration is invalid: ", "spec.http[0].route", "110"},
			field: "spec.http[0].route",
		},
		{
			name: "unknown field",
			obj: `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"echo","namespace":"default"},
"spec":{"hosts":["echo"],"http":[{"route":[{"destination":{"host":"echo"},"wieght":100}]}]}}`,
			want:  []string{`spec.http[0].route[0].wieght: unknown field "wieght"`},
			field: "spec.http[0].route[0].wieght",
		},
		{
			name:  "unknown top-level field",
			obj:   `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"echo"},"spec":{"host":"echo"},"extra":1}`,
			want:  []string{`extra: unknown field "extra"`},
			field: "extra",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := e.admit(t, review("CREATE", "VirtualService", "default", "echo", tc.obj))
			r := out.Response
			if r.Result != nil {
				t.Logf("denied: %s", r.Result.Message)
			}
			if r.Allowed {
				t.Fatal("allowed, want denied")
			}
			if r.Result == nil || r.Result.Code != http.StatusUnprocessableEntity || r.Result.Reason != "Invalid" {
				t.Fatalf("result = %+v, want 422 Invalid", r.Result)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Result.Message, w) {
					t.Errorf("message %q lacks %q", r.Result.Message, w)
				}
			}
			if r.Result.Details == nil || len(r.Result.Details.Causes) == 0 {
				t.Fatalf("no causes in %+v", r.Result)
			}
			if f := r.Result.Details.Causes[0].Field; !strings.HasPrefix(f, tc.field) {
				t.Errorf("cause field = %q, want it to start with %q", f, tc.field)
			}
		})
	}
	// An operation this code does not know is validated, not waved through.
	if r := e.admit(t, review("PATCH", "VirtualService", "default", "echo", virtualService(90, 20))).Response; r.Allowed {
		t.Error("an invalid object under an unknown operation was allowed")
	}
	if got := counter(t, e.reg, "galley_validation_failed", "kind", "VirtualService", "reason", reasonInvalid); got != 3 {
		t.Errorf("galley_validation_failed{kind=VirtualService,reason=invalid_resource} = %v, want 3", got)
	}
}

func TestWarningsAllowed(t *testing.T) {
	e := start(t)
	se := `{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"ext","namespace":"default"},
"spec":{"hosts":["ext.example.com"],"resolution":"STATIC","ports":[{"number":80,"name":"http","protocol":"HTTP"}]}}`
	r := e.admit(t, review("CREATE", "ServiceEntry", "default", "ext", se)).Response
	if !r.Allowed {
		t.Fatalf("denied: %v", r.Result)
	}
	if len(r.Warnings) != 1 || !strings.HasPrefix(r.Warnings[0], "spec.endpoints: ") {
		t.Errorf("warnings = %q, want one about spec.endpoints", r.Warnings)
	}
}

func TestNamespaceFromRequest(t *testing.T) {
	e := start(t)
	// No namespace in the object: the request's is used, as the API server
	// stores it (here an invalid one, so the verdict shows it was used).
	obj := `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"echo"},"spec":{"host":"echo"}}`
	r := e.admit(t, review("CREATE", "DestinationRule", "Not_A_Label", "echo", obj)).Response
	if r.Allowed || !strings.Contains(r.Result.Message, `invalid namespace "Not_A_Label"`) {
		t.Errorf("allowed=%v result=%v, want the request namespace validated", r.Allowed, r.Result)
	}
	r = e.admit(t, review("CREATE", "DestinationRule", "shop", "echo", obj)).Response
	if !r.Allowed {
		t.Errorf("denied: %v", r.Result)
	}
}

func TestNotOurs(t *testing.T) {
	e := start(t)
	for _, tc := range []struct{ name, review string }{
		{"unknown kind", review("CREATE", "Deployment", "default", "web",
			`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"whatever":true}}`)},
		{"unknown Istio kind", review("CREATE", "Gateway", "default", "gw",
			`{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"gw"},"spec":{"servers":"?"}}`)},
		{"delete", review("DELETE", "VirtualService", "default", "echo", "")},
		{"connect", review("CONNECT", "VirtualService", "default", "echo", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.admit(t, tc.review).Response
			if !r.Allowed || len(r.Warnings) != 0 {
				t.Errorf("allowed=%v warnings=%q, want allowed without warnings", r.Allowed, r.Warnings)
			}
		})
	}
	// None of them counts as a validation.
	if n := series(t, e.reg, "galley_validation_passed"); n != 0 {
		t.Errorf("galley_validation_passed has %d series, want 0", n)
	}
}

func TestMalformedRequests(t *testing.T) {
	e := start(t)
	for _, tc := range []struct {
		name, contentType, body string
		code                    int
		want                    string
	}{
		{"garbage", "application/json", "\x00not json{", http.StatusBadRequest, "decoding the AdmissionReview"},
		{"empty", "application/json", "", http.StatusBadRequest, "empty body"},
		{"no request", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest, "no request"},
		{"no uid", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}`, http.StatusBadRequest, "no uid"},
		{"wrong version", "application/json", `{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"x"}}`, http.StatusBadRequest, "unsupported AdmissionReview apiVersion"},
		{"wrong kind", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{"uid":"x"}}`, http.StatusBadRequest, "want AdmissionReview"},
		{"yaml", "application/yaml", "apiVersion: admission.k8s.io/v1", http.StatusUnsupportedMediaType, "want application/json"},
		{"too large", "application/json", `{"x":"` + strings.Repeat("a", 65<<10) + `"}`, http.StatusRequestEntityTooLarge, "larger than 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.post(t, Path, tc.contentType, []byte(tc.body))
			if code != tc.code || !strings.Contains(string(body), tc.want) {
				t.Errorf("got %d %q, want %d with %q", code, body, tc.code, tc.want)
			}
		})
	}
	resp, err := e.client.Get(e.url + Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}
	if code, _ := e.post(t, "/other", "application/json", []byte("{}")); code != http.StatusNotFound {
		t.Errorf("POST /other: %d, want 404", code)
	}
	if got := counter(t, e.reg, "galley_validation_failed", "kind", "", "reason", reasonBadReview); got != 8 {
		t.Errorf("galley_validation_failed{reason=malformed_review} = %v, want 8", got)
	}
}

func TestUnreadableObjectDenied(t *testing.T) {
	e := start(t)
	for _, tc := range []struct{ name, obj, want string }{
		{"null object on create", "", "request.object is empty"},
		{"array", `[{"kind":"VirtualService"}]`, "not a JSON object"},
		{"no kind", `{"apiVersion":"networking.istio.io/v1","metadata":{"name":"x"}}`, "apiVersion and kind are required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.admit(t, review("CREATE", "VirtualService", "default", "x", tc.obj)).Response
			if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, tc.want) {
				t.Errorf("allowed=%v result=%+v, want denied with %q", r.Allowed, r.Result, tc.want)
			}
		})
	}
}

func TestV1beta1Echoed(t *testing.T) {
	e := start(t)
	rv := strings.Replace(review("CREATE", "VirtualService", "default", "echo", virtualService(100)), "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1)
	if out := e.admit(t, rv); out.APIVersion != "admission.k8s.io/v1beta1" || !out.Response.Allowed {
		t.Errorf("got %s allowed=%v, want v1beta1 allowed", out.APIVersion, out.Response.Allowed)
	}
}

func TestMetricsRegisteredOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Options{Registry: reg}); err != nil {
		t.Fatal(err)
	}
	var are prometheus.AlreadyRegisteredError
	if _, err := New(Options{Registry: reg}); !errors.As(err, &are) {
		t.Errorf("second New on one registry: %v, want AlreadyRegisteredError", err)
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without a registry succeeded")
	}
}

func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(cn string) {
		_, c, k := testCert(t, cn)
		for path, b := range map[string][]byte{certFile: c, keyFile: k} {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := LoadCertFiles(certFile, keyFile, quietLogger()); err == nil {
		t.Fatal("LoadCertFiles of missing files succeeded")
	}
	write("first")
	cf, err := LoadCertFiles(certFile, keyFile, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		c, err := cf.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	if got := cn(); got != "first" {
		t.Fatalf("CN = %q", got)
	}
	// A broken rotation keeps the old pair.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "first" {
		t.Errorf("after a broken rotation CN = %q, want the previous pair", got)
	}
	// Make sure the new files' stamps differ even on coarse clocks.
	time.Sleep(10 * time.Millisecond)
	write("second")
	if got := cn(); got != "second" {
		t.Errorf("after rotation CN = %q, want second", got)
	}
}
