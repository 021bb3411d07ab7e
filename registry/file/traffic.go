package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	trafficv1 "github.com/sextant-mesh/sextant/api/traffic/v1alpha1"
	"github.com/sextant-mesh/sextant/model"
)

// TrafficStateFile is where SetTrafficState records state changes, as
// TrafficState objects, inside the watched directory: the change survives a
// restart and applies through the same path as any edit.
const TrafficStateFile = "sextant-traffic-state.yaml"

type trafficDoc struct {
	APIVersion string                     `json:"apiVersion"`
	Kind       string                     `json:"kind"`
	Metadata   trafficMeta                `json:"metadata"`
	Spec       trafficv1.TrafficStateSpec `json:"spec"`
}

type trafficMeta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// SetTrafficState records that the endpoints of host in namespace matching
// selector are in state. It rewrites TrafficStateFile atomically, replacing
// an earlier entry for the same host and selector; the watch applies it.
func (r *Registry) SetTrafficState(_ context.Context, namespace, host string, selector map[string]string, state string) error {
	switch state {
	case trafficv1.StateRunning, trafficv1.StateKeepalive:
	default:
		return fmt.Errorf("state %q must be %q or %q", state, trafficv1.StateRunning, trafficv1.StateKeepalive)
	}
	r.trafficMu.Lock()
	defer r.trafficMu.Unlock()
	path := filepath.Join(r.dir, TrafficStateFile)
	docs, err := readTrafficDocs(path)
	if err != nil {
		return err
	}
	name := trafficName(host, selector)
	kept := docs[:0]
	for _, d := range docs {
		// A change for the whole service supersedes every narrower one.
		if d.Metadata.Namespace == namespace && (d.Metadata.Name == name || (len(selector) == 0 && d.Spec.Host == host)) {
			continue
		}
		kept = append(kept, d)
	}
	kept = append(kept, trafficDoc{
		APIVersion: trafficv1.APIVersion, Kind: trafficv1.Kind,
		Metadata: trafficMeta{Name: name, Namespace: namespace},
		Spec:     trafficv1.TrafficStateSpec{Host: host, Selector: selector, State: state},
	})
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].Metadata.Name < kept[j].Metadata.Name })
	var b strings.Builder
	b.WriteString("# Written by Sextant (sextantctl traffic set). Edits are kept; entries are\n# replaced per service and selector.\n")
	for _, d := range kept {
		y, err := yaml.Marshal(d)
		if err != nil {
			return fmt.Errorf("encode traffic state: %w", err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	tmp := filepath.Join(r.dir, "."+TrafficStateFile+".tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	r.log.Info("traffic state recorded", "file", path, "namespace", namespace, "host", host, "selector", selector, "state", state)
	return nil
}

func readTrafficDocs(path string) ([]trafficDoc, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out []trafficDoc
	for _, part := range strings.Split(string(data), "\n---") {
		part = strings.TrimPrefix(strings.TrimSpace(part), "---")
		if strings.TrimSpace(stripComments(part)) == "" {
			continue
		}
		var d trafficDoc
		if err := yaml.UnmarshalStrict([]byte(part), &d); err != nil {
			return nil, fmt.Errorf("%s: cannot update it, fix it first: %w", path, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// trafficName is a stable object name for a host and selector.
func trafficName(host string, selector map[string]string) string {
	h := (&model.Hasher{}).Str(host).Map(selector).Sum()
	base := strings.NewReplacer(".", "-").Replace(strings.SplitN(host, ".", 2)[0])
	if len(base) > 40 {
		base = base[:40]
	}
	return fmt.Sprintf("%s-%08x", base, uint32(h))
}
