package translate

import (
	"testing"

	"github.com/sextant-mesh/sextant/internal/meshtest"
	"github.com/sextant-mesh/sextant/model"
)

// A VirtualService matching on sourceLabels makes labels part of every
// proxy's scope key: proxies that differ only in labels no longer share
// computed config, proxies with equal labels still do. Without such a
// rule, labels do not split scopes (route-features.yaml's golden output
// shows the gold-only route going to the labelled proxy alone).
func TestSourceLabelsSplitScope(t *testing.T) {
	gold := map[string]string{"app": "client", "end-user-tier": "gold"}
	plain := map[string]string{"app": "client"}
	for _, tc := range []struct {
		input        string
		labelsMatter bool
	}{
		{"testdata/route-features.yaml", true},
		{"testdata/tcp-tls.yaml", false},
	} {
		snap := meshtest.Snapshot(t, tc.input)
		if snap.LabelsMatter() != tc.labelsMatter {
			t.Fatalf("%s: LabelsMatter = %v, want %v", tc.input, snap.LabelsMatter(), tc.labelsMatter)
		}
		c := NewContext(snap, model.DefaultMeshConfig(), NewCache())
		a := c.ScopeOf(testProxy(t, "a", "default", "grpc", gold))
		b := c.ScopeOf(testProxy(t, "b", "default", "grpc", plain))
		a2 := c.ScopeOf(testProxy(t, "a2", "default", "grpc", gold))
		if (a != b) != tc.labelsMatter {
			t.Errorf("%s: scopes of proxies differing only in labels equal=%v (%+v, %+v)", tc.input, a == b, a, b)
		}
		if a != a2 {
			t.Errorf("%s: proxies with equal labels have different scopes: %+v, %+v", tc.input, a, a2)
		}
	}
}
