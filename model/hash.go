package model

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"sort"

	"google.golang.org/protobuf/proto"
)

// Hasher builds content hashes that are stable across processes and
// replicas (FNV-64a over a canonical encoding), so resource versions derived
// from them survive restarts.
type Hasher struct {
	b []byte
}

// Str adds a string, length-prefixed so "ab","c" and "a","bc" differ.
func (h *Hasher) Str(s string) *Hasher {
	h.b = binary.AppendUvarint(h.b, uint64(len(s)))
	h.b = append(h.b, s...)
	return h
}

// U64 adds an integer.
func (h *Hasher) U64(v uint64) *Hasher {
	h.b = binary.LittleEndian.AppendUint64(h.b, v)
	return h
}

// F64 adds a float.
func (h *Hasher) F64(v float64) *Hasher { return h.U64(math.Float64bits(v)) }

// Map adds a string map in key order.
func (h *Hasher) Map(m map[string]string) *Hasher {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h.U64(uint64(len(keys)))
	for _, k := range keys {
		h.Str(k).Str(m[k])
	}
	return h
}

// Strs adds a string slice.
func (h *Hasher) Strs(ss []string) *Hasher {
	h.U64(uint64(len(ss)))
	for _, s := range ss {
		h.Str(s)
	}
	return h
}

// Proto adds a message in deterministic wire form.
func (h *Hasher) Proto(m proto.Message) *Hasher {
	if m == nil {
		return h.U64(0)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		// Only possible for invalid UTF-8 in strings; fall back to a
		// value that still changes when the message does.
		b = []byte(err.Error())
	}
	return h.Str(string(b))
}

// Sum returns the hash.
func (h *Hasher) Sum() uint64 {
	f := fnv.New64a()
	_, _ = f.Write(h.b)
	return f.Sum64()
}

// FormatHash renders a 64-bit hash as 16 hex digits, leading zeros kept,
// so every version string has the same width and a hash that happens to
// start with zeros does not look shorter (or like another one).
func FormatHash(h uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[h&0xf]
		h >>= 4
	}
	return string(b[:])
}

// HashBytes hashes raw bytes.
func HashBytes(b []byte) uint64 {
	f := fnv.New64a()
	_, _ = f.Write(b)
	return f.Sum64()
}

// Hash returns the content hash of a service.
func (s *Service) Hash() uint64 {
	h := &Hasher{}
	h.Str(s.Hostname).Str(s.Namespace).U64(uint64(len(s.Ports)))
	for _, p := range s.Ports {
		h.Str(p.Name).U64(uint64(p.Number)).Str(string(p.Protocol)).U64(uint64(p.TargetPort))
	}
	h.Strs(s.Addresses).U64(uint64(s.Resolution))
	if s.MeshExternal {
		h.U64(1)
	} else {
		h.U64(0)
	}
	h.Map(s.Labels).Strs(s.ExportTo).Map(s.Selector).U64(uint64(s.CreationTime.UnixNano()))
	h.Str(s.Source.Registry).Str(s.Source.Kind).Str(s.Source.Namespace).Str(s.Source.Name).F64(s.KeepaliveShare)
	return h.Sum()
}

func (e *Endpoint) hashInto(h *Hasher) {
	h.Str(e.Address)
	ports := make(map[string]string, len(e.Ports))
	for k, v := range e.Ports {
		ports[k] = string(binary.AppendUvarint(nil, uint64(v)))
	}
	h.Map(ports).Map(e.Labels).Str(e.Locality).U64(uint64(e.Weight)).U64(uint64(e.Health))
	h.Str(e.ServiceAccount).Str(e.Network)
}

// Hash returns the endpoint's content hash, computed once: endpoints are
// immutable after they are stored in a shard.
func (e *Endpoint) Hash() uint64 {
	if e.hash == 0 {
		h := &Hasher{}
		e.hashInto(h)
		e.hash = h.Sum() | 1 // never 0, so 0 means "not computed"
	}
	return e.hash
}

// HashEndpoints returns the content hash of an endpoint list.
func HashEndpoints(eps []*Endpoint) uint64 {
	h := &Hasher{}
	h.U64(uint64(len(eps)))
	for _, e := range eps {
		h.U64(e.Hash())
	}
	return h.Sum()
}

// HashConfig computes a config's content hash.
func HashConfig(c *Config) uint64 {
	h := &Hasher{}
	h.Str(c.Key.String()).U64(uint64(c.CreationTime.UnixNano())).Map(c.Labels).Proto(c.Spec)
	return h.Sum()
}
