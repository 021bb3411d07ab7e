package xds

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/sextant-mesh/sextant/discovery/translate"
)

// TestNameSetMatchesMap runs random subscription changes against nameSet
// and a map, and compares contents, sorted order and the version sum.
func TestNameSetMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	name := func() string { return "n" + strconv.Itoa(rng.IntN(40)) }
	names := func() []string {
		out := make([]string, rng.IntN(8))
		for i := range out {
			out[i] = name()
		}
		return out
	}
	var s nameSet
	ref := map[string]*translate.Resource{}
	for step := range 5000 {
		switch rng.IntN(4) {
		case 0:
			in := names()
			var want []string
			for _, n := range in {
				if _, ok := ref[n]; !ok && !slices.Contains(want, n) {
					want = append(want, n)
					ref[n] = nil
				}
			}
			slices.Sort(want)
			if got := s.add(in); !slices.Equal(got, want) {
				t.Fatalf("step %d: add(%v) = %v, want %v", step, in, got, want)
			}
		case 1:
			in := names()
			for _, n := range in {
				delete(ref, n)
			}
			s.drop(in)
		case 2:
			n := name()
			r := &translate.Resource{Name: n, Version: strconv.Itoa(step)}
			if _, ok := ref[n]; ok {
				ref[n] = r
			}
			s.set(n, r)
		case 3:
			keep := map[string]bool{}
			for _, n := range names() {
				keep[n] = true
			}
			for n := range ref {
				if !keep[n] && rng.IntN(2) == 0 {
					delete(ref, n)
				}
			}
			s.retain(func(n string) bool { _, ok := ref[n]; return ok })
		}
		var sum uint64
		for n, r := range ref {
			sum += nameHash(n, r)
			got, ok := s.get(n)
			if !ok || got != r || !s.has(n) || !s.hasBytes([]byte(n)) {
				t.Fatalf("step %d: %s: got %v %v", step, n, got, ok)
			}
		}
		if s.len() != len(ref) || s.sum != sum {
			t.Fatalf("step %d: len %d sum %x, want %d %x", step, s.len(), s.sum, len(ref), sum)
		}
		if !slices.IsSorted(s.names()) {
			t.Fatalf("step %d: names not sorted: %v", step, s.names())
		}
		if s.has("absent") || s.hasBytes([]byte("n")) {
			t.Fatalf("step %d: finds a name never added", step)
		}
	}
}
