package xds

import (
	"slices"
	"strings"

	"github.com/sextant-mesh/sextant/discovery/translate"
)

// nameSet is what a named watch is subscribed to: each name with the
// resource last sent for it (nil: nothing yet). It is a slice sorted by
// name rather than a map: 24 bytes a name against ~57, and the names
// themselves are interned, so a proxy subscribed to 1,000 clusters holds
// 24 KB instead of 57 KB — most of the server's heap on a large mesh, and
// what its garbage collector has to scan. Subscriptions change in batches
// (add, retain), lookups are binary searches.
type nameSet struct {
	e []nameEntry
	// sum is the running sum of nameHash over the entries (see
	// namedVersionLocked).
	sum uint64
}

type nameEntry struct {
	name string
	res  *translate.Resource
}

func cmpEntry(e nameEntry, n string) int { return strings.Compare(e.name, n) }

func (s *nameSet) len() int { return len(s.e) }

func (s *nameSet) get(n string) (*translate.Resource, bool) {
	i, ok := slices.BinarySearchFunc(s.e, n, cmpEntry)
	if !ok {
		return nil, false
	}
	return s.e[i].res, true
}

func (s *nameSet) has(n string) bool {
	_, ok := slices.BinarySearchFunc(s.e, n, cmpEntry)
	return ok
}

// hasBytes is has for a name not yet made a string.
func (s *nameSet) hasBytes(b []byte) bool {
	_, ok := slices.BinarySearchFunc(s.e, b, func(e nameEntry, b []byte) int { return compareBytes(e.name, b) })
	return ok
}

func compareBytes(s string, b []byte) int {
	n := min(len(s), len(b))
	for i := range n {
		switch {
		case s[i] < b[i]:
			return -1
		case s[i] > b[i]:
			return 1
		}
	}
	switch {
	case len(s) < len(b):
		return -1
	case len(s) > len(b):
		return 1
	}
	return 0
}

// set records what was sent for a subscribed name; it does nothing for a
// name not subscribed.
func (s *nameSet) set(n string, r *translate.Resource) {
	i, ok := slices.BinarySearchFunc(s.e, n, cmpEntry)
	if !ok {
		return
	}
	s.sum -= nameHash(n, s.e[i].res)
	s.e[i].res = r
	s.sum += nameHash(n, r)
}

// add subscribes to names (duplicates, "*" and names already subscribed
// are skipped) and returns the ones added, sorted.
func (s *nameSet) add(names []string) []string {
	var added []string
	for _, n := range names {
		if n != "*" && !s.has(n) {
			added = append(added, n)
		}
	}
	if len(added) == 0 {
		return nil
	}
	slices.Sort(added)
	added = slices.Compact(added)
	merged := make([]nameEntry, 0, len(s.e)+len(added))
	i := 0
	for _, n := range added {
		for i < len(s.e) && s.e[i].name < n {
			merged = append(merged, s.e[i])
			i++
		}
		merged = append(merged, nameEntry{name: n})
		s.sum += nameHash(n, nil)
	}
	s.e = append(merged, s.e[i:]...)
	return added
}

// retain unsubscribes every name keep rejects.
func (s *nameSet) retain(keep func(string) bool) {
	out := s.e[:0]
	for _, e := range s.e {
		if keep(e.name) {
			out = append(out, e)
			continue
		}
		s.sum -= nameHash(e.name, e.res)
	}
	clear(s.e[len(out):])
	s.e = out
	if cap(s.e) > 2*len(s.e)+8 {
		s.e = slices.Clip(slices.Clone(s.e))
	}
}

// drop unsubscribes names.
func (s *nameSet) drop(names []string) {
	if len(names) == 0 {
		return
	}
	gone := make(map[string]bool, len(names))
	for _, n := range names {
		gone[n] = true
	}
	s.retain(func(n string) bool { return !gone[n] })
}

// names returns the subscribed names, sorted.
func (s *nameSet) names() []string {
	out := make([]string, len(s.e))
	for i, e := range s.e {
		out[i] = e.name
	}
	return out
}
