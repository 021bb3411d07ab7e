package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/internal/adsclient"
	"github.com/sextant-mesh/sextant/internal/testenv"
)

// TestIstioctlProxyStatus runs Istio's own istioctl (built by
// hack/istioctl.sh; make test sets SEXTANT_ISTIOCTL) against Sextant: it asks
// for istio.io/debug/syncz over ADS and prints each proxy's sync state.
func TestIstioctlProxyStatus(t *testing.T) {
	bin := os.Getenv("SEXTANT_ISTIOCTL")
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("SEXTANT_ISTIOCTL is not set: CI must build istioctl (hack/istioctl.sh) and run make test")
		}
		t.Skip("SEXTANT_ISTIOCTL not set; run `make test` (builds istioctl with hack/istioctl.sh)")
	}
	dir := t.TempDir()
	testenv.WriteFile(t, dir+"/mesh.yaml", meshYAML)
	env := testenv.Start(t, dir, testenv.Options{})
	cc := dial(t, env.Addr)
	c := startClient(t, cc, "reviews-v1", "grpc", adsclient.Options{Delta: true})
	waitResources(t, c, translate.RouteType, 3)
	waitSynced(t, env, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "proxy-status", "--xds-address", env.Addr, "--plaintext", "--revision", "default", "-v", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("istioctl proxy-status: %v\n%s", err, out)
	}
	t.Logf("istioctl proxy-status:\n%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "reviews-v1.default ") {
		t.Fatalf("want one proxy row named reviews-v1.default, got:\n%s", out)
	}
	if n := strings.Count(lines[1], "SYNCED"); n != 4 {
		t.Errorf("want CDS, LDS, EDS and RDS SYNCED, got %d SYNCED in %q", n, lines[1])
	}
}
