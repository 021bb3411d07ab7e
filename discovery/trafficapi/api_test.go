package trafficapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	trafficv1 "github.com/sextant-mesh/sextant/api/traffic/v1alpha1"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// startSample runs Sextant on a copy of the sample mesh (examples/mesh).
func startSample(t *testing.T) *testenv.Env {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"echo.yaml", "echo-split.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "mesh", name))
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, filepath.Join(dir, name), string(b))
	}
	return testenv.Start(t, dir, testenv.Options{})
}

func post(t *testing.T, env *testenv.Env, req trafficv1.SetRequest) (int, string) {
	t.Helper()
	body, _ := json.Marshal(req)
	resp, err := http.Post(env.Monitor.URL+"/api/v1/traffic", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func status(t *testing.T, env *testenv.Env, service string) trafficv1.ServiceStatus {
	t.Helper()
	var st []trafficv1.ServiceStatus
	env.GetJSON(t, "/api/v1/traffic?service="+service, &st)
	if len(st) != 1 {
		t.Fatalf("status of %s: %+v", service, st)
	}
	return st[0]
}

// TestStatusReadsWhatSetWrote: the answer to a set comes once the change
// is served, so the status read right after it shows the change, every
// time.
func TestStatusReadsWhatSetWrote(t *testing.T) {
	env := startSample(t)
	const host = "echo.default.svc.cluster.local"
	for i, state := range []string{"keepalive", "running", "keepalive", "running"} {
		code, body := post(t, env, trafficv1.SetRequest{Service: host, Selector: map[string]string{"version": "v2"}, State: state})
		if code != http.StatusOK {
			t.Fatalf("set #%d: %d %s", i, code, body)
		}
		var resp trafficv1.SetResponse
		if err := json.Unmarshal([]byte(body), &resp); err != nil || !resp.Served || resp.Matched != 1 || resp.Registry != "file" {
			t.Fatalf("set #%d: %v %+v", i, err, resp)
		}
		st := status(t, env, host)
		wantKeepalive := 0
		if state == "keepalive" {
			wantKeepalive = 1
		}
		if st.Keepalive != wantKeepalive || st.Running != 2-wantKeepalive {
			t.Errorf("status right after set #%d (%s): %+v", i, state, st)
		}
	}
	// A leading part of one hostname is enough, as in proxy-config --fqdn.
	if code, body := post(t, env, trafficv1.SetRequest{Service: "echo", State: "running"}); code != http.StatusOK || !strings.Contains(body, host) {
		t.Errorf("short name: %d %s", code, body)
	}
	if st := status(t, env, "echo"); st.Service != host {
		t.Errorf("status by short name: %+v", st)
	}
}

// TestErrorsForPeople: refusals name what was wrong and what exists, in
// words, not Go syntax.
func TestErrorsForPeople(t *testing.T) {
	env := startSample(t)
	for _, c := range []struct {
		req  trafficv1.SetRequest
		code int
		want []string
	}{
		{trafficv1.SetRequest{Service: "checkout.default.svc.cluster.local", State: "running"}, http.StatusNotFound,
			[]string{`service "checkout.default.svc.cluster.local" not found in the mesh`, "services: echo.default.svc.cluster.local"}},
		{trafficv1.SetRequest{Service: "echo.default.svc.cluster.local", Selector: map[string]string{"pool": "peak", "app": "echo"}, State: "running"}, http.StatusNotFound,
			[]string{"no endpoint of echo.default.svc.cluster.local has the labels app=echo,pool=peak", "its endpoints have: app=echo,version=v1; app=echo,version=v2"}},
		{trafficv1.SetRequest{Service: "echo", State: "asleep"}, http.StatusBadRequest, []string{`state "asleep": want keepalive or running`}},
	} {
		code, body := post(t, env, c.req)
		if code != c.code {
			t.Errorf("%+v: %d, want %d: %s", c.req, code, c.code, body)
		}
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("%+v: %q lacks %q", c.req, body, w)
			}
		}
		if strings.Contains(body, "map[") {
			t.Errorf("%+v: Go syntax in %q", c.req, body)
		}
	}
}
