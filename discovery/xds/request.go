package xds

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Field numbers of DiscoveryRequest.
const (
	reqVersionInfo   = 1
	reqNode          = 2
	reqResourceNames = 3
	reqTypeURL       = 4
	reqResponseNonce = 5
	reqErrorDetail   = 6
)

// decodeSotwRequest decodes a DiscoveryRequest without allocating its
// resource names. A SotW client repeats its whole subscription in every
// ACK (a proxyless client watching 1,000 clusters sends 1,000 names each
// time); the names are only looked up, and become strings only when the
// subscription changed (request.sotwNames). b must not change while the
// request is in use.
func decodeSotwRequest(b []byte) (*request, error) {
	r := &request{raw: b}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("DiscoveryRequest: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType || num < reqVersionInfo || num > reqErrorDetail {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, fmt.Errorf("DiscoveryRequest field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, fmt.Errorf("DiscoveryRequest field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if num != reqNode && num != reqErrorDetail && !utf8.Valid(v) {
			return nil, fmt.Errorf("DiscoveryRequest field %d: invalid UTF-8", num)
		}
		switch num {
		case reqVersionInfo:
			r.version = string(v)
		case reqNode:
			node := &corev3.Node{}
			if err := proto.Unmarshal(v, node); err != nil {
				return nil, fmt.Errorf("DiscoveryRequest node: %w", err)
			}
			r.node = node
		case reqResourceNames:
			r.rawNames++
		case reqTypeURL:
			r.typeURL = string(v)
		case reqResponseNonce:
			r.nonce = string(v)
		case reqErrorDetail:
			st := &statuspb.Status{}
			if err := proto.Unmarshal(v, st); err != nil {
				return nil, fmt.Errorf("DiscoveryRequest error_detail: %w", err)
			}
			r.hasError, r.errDetail = true, st.GetMessage()
		}
	}
	return r, nil
}

// eachRawName calls fn with each resource name of a request decoded by
// decodeSotwRequest (already validated), until fn returns false.
func (r *request) eachRawName(fn func([]byte) bool) {
	b := r.raw
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if typ != protowire.BytesType {
			b = b[protowire.ConsumeFieldValue(num, typ, b):]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		b = b[n:]
		if num == reqResourceNames && !fn(v) {
			return
		}
	}
}

// sotwNames returns the request's resource names, interned.
func (r *request) sotwNames(in *interner) []string {
	if r.raw != nil && r.names == nil && r.rawNames > 0 {
		r.names = make([]string, 0, r.rawNames)
		r.eachRawName(func(b []byte) bool {
			r.names = append(r.names, in.get(string(b)))
			return true
		})
	}
	return r.names
}

// namesHash hashes the request's names in order.
func (r *request) namesHash(seed maphash.Seed) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	var n [4]byte
	r.eachRawName(func(b []byte) bool {
		binary.LittleEndian.PutUint32(n[:], uint32(len(b)))
		_, _ = h.Write(n[:])
		_, _ = h.Write(b)
		return true
	})
	return h.Sum64()
}

// sameSubscription reports, without allocating, whether a SotW request
// names exactly what w is subscribed to. Clients repeat their list in the
// same order, so a hash of the list as last received answers most ACKs
// without a lookup per name.
func (r *request) sameSubscription(w *watch, seed maphash.Seed) bool {
	if r.raw == nil || r.rawNames != w.names.len() {
		return false
	}
	h := r.namesHash(seed)
	if w.subHash != 0 && h == w.subHash {
		return true
	}
	same := true
	r.eachRawName(func(b []byte) bool {
		same = w.names.hasBytes(b)
		return same
	})
	if same {
		w.subHash = h
	}
	return same
}
