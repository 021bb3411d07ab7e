package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sextant-mesh/sextant/model"
)

// Seeds besides testdata/fuzz: the valid test files, whole and split.
func addFileSeeds(f *testing.F, add func(data []byte)) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		add(data)
	}
}

// slowInput is how long one fuzz input may take. Parse serves the
// admission webhook and the file registry: a small input that takes longer
// is a denial of service.
const slowInput = 10 * time.Second

// watchdog crashes the fuzz worker (so the fuzzer records the input) when
// the input takes longer than slowInput; call the returned func when done.
// The fuzzer itself has no per-input timeout.
func watchdog(inputs ...[]byte) (stop func()) {
	t := time.AfterFunc(slowInput, func() {
		panic(fmt.Sprintf("input took over %v (%d inputs, %d bytes first)", slowInput, len(inputs), len(inputs[0])))
	})
	return func() { t.Stop() }
}

// checkResult asserts what Parse promises for any input.
func checkResult(t *testing.T, loc string, res *Result) {
	t.Helper()
	if res == nil {
		t.Fatal("Parse returned nil")
	}
	if res.Location != loc {
		t.Errorf("Result.Location = %q, want %q", res.Location, loc)
	}
	hasErr := false
	for _, e := range res.Errors {
		if e.Location == "" || !strings.HasPrefix(e.Location, loc) {
			t.Errorf("error without the input's location: %+v", e)
		}
		if e.Message == "" {
			t.Errorf("error without a message: %+v", e)
		}
		if e.Registry != "" {
			t.Errorf("Parse set Registry: %+v", e)
		}
		hasErr = hasErr || !e.Warning
	}
	if res.Valid() == hasErr {
		t.Errorf("Valid() = %v with errors %v", res.Valid(), res.Errors)
	}
	ids := map[string]bool{}
	for _, o := range res.Objects {
		if o.Kind == "" || o.Name == "" || o.Namespace == "" || o.APIVersion == "" || o.Spec == nil {
			t.Errorf("incomplete object %+v", o)
		}
		if !strings.HasPrefix(o.Location, loc) {
			t.Errorf("object %s has location %q, not in %q", o.ID(), o.Location, loc)
		}
		if ids[o.ID()] {
			t.Errorf("object %s returned twice", o.ID())
		}
		ids[o.ID()] = true
		// An object with an error of its own is not returned.
		for _, e := range res.Errors {
			if !e.Warning && e.Location == o.Location && e.Object == o.ID() {
				t.Errorf("object %s returned despite error %v", o.ID(), e)
			}
		}
	}
}

// FuzzParse: any bytes parse without panicking, every problem is reported
// with a location, Valid agrees with the errors, and parsing is
// deterministic (the file registry relies on equal inputs giving equal
// errors to avoid spurious events).
func FuzzParse(f *testing.F) {
	addFileSeeds(f, func(data []byte) { f.Add(data) })
	f.Fuzz(func(t *testing.T, data []byte) {
		const loc = "fuzz.yaml"
		defer watchdog(data)()
		res := Parse(loc, data)
		checkResult(t, loc, res)
		again := Parse(loc, data)
		if !reflect.DeepEqual(res.Errors, again.Errors) {
			t.Errorf("errors differ between two parses:\n%v\n%v", res.Errors, again.Errors)
		}
		if len(res.Objects) != len(again.Objects) {
			t.Errorf("object count differs between two parses: %d, %d", len(res.Objects), len(again.Objects))
		}
	})
}

// objectState is a deep copy of what Build must not modify.
type objectState struct {
	labels, annotations map[string]string
	spec                any
}

func snapshotObjects(results []*Result) []objectState {
	var out []objectState
	for _, r := range results {
		for _, o := range r.Objects {
			s := objectState{labels: maps.Clone(o.Labels), annotations: maps.Clone(o.Annotations)}
			switch spec := o.Spec.(type) {
			case proto.Message:
				s.spec = proto.Clone(spec)
			case runtime.Object:
				s.spec = spec.DeepCopyObject()
			default:
				// Plain structs (TrafficState): compare their JSON.
				js, err := json.Marshal(spec)
				if err != nil {
					panic(err)
				}
				s.spec = js
			}
			out = append(out, s)
		}
	}
	return out
}

func unchanged(results []*Result, before []objectState) bool {
	i := 0
	for _, r := range results {
		for _, o := range r.Objects {
			b := before[i]
			i++
			if !maps.Equal(b.labels, o.Labels) || !maps.Equal(b.annotations, o.Annotations) {
				return false
			}
			switch spec := o.Spec.(type) {
			case proto.Message:
				if !proto.Equal(b.spec.(proto.Message), spec) {
					return false
				}
			case runtime.Object:
				if !reflect.DeepEqual(b.spec, spec) {
					return false
				}
			default:
				js, err := json.Marshal(spec)
				if err != nil || string(js) != string(b.spec.([]byte)) {
					return false
				}
			}
		}
	}
	return true
}

// FuzzBuild: two inputs (two files) parse and build without panicking;
// the output keeps its documented order and uniqueness, refers only to its
// own services, attributes every error to an input, leaves the results
// untouched and is deterministic.
func FuzzBuild(f *testing.F) {
	var seeds [][]byte
	addFileSeeds(f, func(data []byte) { seeds = append(seeds, data) })
	for _, a := range seeds {
		for _, b := range seeds {
			f.Add(a, b)
		}
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		defer watchdog(a, b)()
		results := []*Result{Parse("a.yaml", a), Parse("b.yaml", b)}
		before := snapshotObjects(results)
		out := Build("fuzz", results)
		if !unchanged(results, before) {
			t.Fatal("Build modified its input")
		}
		keys := map[model.ServiceKey]bool{}
		for i, svc := range out.Services {
			k := model.ServiceKey{Namespace: svc.Namespace, Hostname: svc.Hostname}
			if keys[k] {
				t.Errorf("service %s built twice", k)
			}
			keys[k] = true
			if i > 0 {
				p := out.Services[i-1]
				if p.Namespace > svc.Namespace || (p.Namespace == svc.Namespace && p.Hostname > svc.Hostname) {
					t.Errorf("services not sorted: %s/%s before %s", p.Namespace, p.Hostname, k)
				}
			}
		}
		for k := range out.Endpoints {
			if !keys[k] {
				t.Errorf("endpoints for %s, which is not a built service", k)
			}
		}
		if !slices.IsSortedFunc(out.Configs, func(x, y *model.Config) int { return strings.Compare(x.Key.String(), y.Key.String()) }) {
			t.Error("configs not sorted by key")
		}
		for i := 1; i < len(out.Configs); i++ {
			if out.Configs[i].Key == out.Configs[i-1].Key {
				t.Errorf("config %s built twice", out.Configs[i].Key)
			}
		}
		if n := len(out.ErrorsFor("a.yaml")) + len(out.ErrorsFor("b.yaml")); n != len(out.Errors) {
			t.Errorf("%d of %d errors belong to no input", len(out.Errors)-n, len(out.Errors))
		}
		for _, e := range out.Errors {
			if e.Location == "" || e.Message == "" || e.Registry != "fuzz" {
				t.Errorf("incomplete error %+v", e)
			}
		}
		// Same inputs, same output (content hashes drive pushes).
		again := Build("fuzz", results)
		if len(again.Services) != len(out.Services) || len(again.Configs) != len(out.Configs) ||
			len(again.Endpoints) != len(out.Endpoints) || !reflect.DeepEqual(again.Errors, out.Errors) {
			t.Fatal("Build is not deterministic")
		}
		for i, c := range out.Configs {
			if again.Configs[i].Hash != c.Hash {
				t.Errorf("config %s hashes differently on a second build", c.Key)
			}
		}
		for k, eps := range out.Endpoints {
			if len(again.Endpoints[k]) != len(eps) {
				t.Errorf("service %s has %d endpoints, then %d", k, len(eps), len(again.Endpoints[k]))
			}
		}
	})
}
