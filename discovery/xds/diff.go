package xds

// Diffing: what a push or a request changes for one watch, against what
// the connection last sent, and the responses that carry it.

import (
	"time"

	"github.com/sextant-mesh/sextant/discovery/translate"
	"github.com/sextant-mesh/sextant/model"
)

// push sends what req changed for every watched type.
func (c *Connection) push(req *PushRequest) error {
	// The push slot bounds concurrent generation (CPU); sending happens
	// after it is released, so a slow proxy never holds a slot.
	start := time.Now()
	c.s.sem <- struct{}{}
	c.s.metrics.QueueTime.Observe(time.Since(start).Seconds())
	c.mu.Lock()
	var sends []outgoing
	for _, t := range pushOrder {
		w := c.watches[t]
		if w == nil {
			continue
		}
		if req.Full || (req.Secrets && t == translate.SecretType) {
			sends = append(sends, c.prepareLocked(w, nil, "")...)
			continue
		}
		if t != translate.EndpointType || w.wildcard {
			continue
		}
		var only []string
		for n := range req.EDS {
			if w.names.has(n) {
				only = append(only, n)
			}
		}
		if len(only) > 0 {
			sends = append(sends, c.prepareLocked(w, only, "")...)
		}
	}
	// Attach the push's records to the watches that were sent something;
	// release the rest at once.
	for _, rec := range req.records {
		n := 0
		for _, o := range sends {
			o.w.waiting = append(o.w.waiting, rec)
			n++
		}
		if n == 0 {
			rec.release(c.s)
			continue
		}
		c.holds[rec] += n
		rec.mu.Lock()
		rec.sent++
		rec.mu.Unlock()
	}
	c.mu.Unlock()
	<-c.s.sem
	return c.sendAll(sends, req.records)
}

// outgoing is one prepared response.
type outgoing struct {
	w     *watch
	msg   *encoded
	count int
	bytes int
	built time.Time
}

// lookup returns the current resource of a type by name for this proxy.
func (c *Connection) lookup(st *pushState, typeURL, name string) *translate.Resource {
	switch typeURL {
	case translate.EndpointType:
		return st.tctx.Endpoint(c.proxy, name)
	case translate.SecretType:
		return c.secretLocked(name)
	case translate.ListenerType:
		if translate.IsGRPCInbound(name) {
			// A proxyless server's listener: built for this proxy's own
			// workload, never part of the shared scope.
			return st.tctx.GRPCInboundListener(c.proxy, name)
		}
	}
	return st.tctx.Resources(c.proxy, typeURL).Get(name)
}

// prepareLocked computes the response for w. only limits a named watch to
// those names; resume is a SotW client's version_info on its first request,
// and nothing is sent when it already matches.
func (c *Connection) prepareLocked(w *watch, only []string, resume string) []outgoing {
	st := c.s.state.Load()
	if st == nil {
		return nil
	}
	built := time.Now()
	known := w.typeURL == translate.ClusterType || w.typeURL == translate.EndpointType ||
		w.typeURL == translate.ListenerType || w.typeURL == translate.RouteType ||
		(w.typeURL == translate.SecretType && !w.wildcard)
	if !known {
		// Types Sextant does not serve on this port: answer wildcard
		// requests with an empty set so clients do not wait.
		if !w.wildcard || w.nonceSent != "" {
			return nil
		}
		return c.finishLocked(w, nil, nil, versionOf(nil), built)
	}
	if w.wildcard {
		ts := st.tctx.Resources(c.proxy, w.typeURL)
		if ts == nil {
			ts = &translate.TypeSet{}
		}
		ver := model.FormatHash(ts.Hash)
		if c.delta {
			var changed []*translate.Resource
			var removed []string
			have := map[string]string{}
			if w.set != nil {
				for _, r := range w.set.Resources {
					have[r.Name] = r.Version
				}
			} else {
				have = w.initial
			}
			for _, r := range ts.Resources {
				if have[r.Name] != r.Version {
					changed = append(changed, r)
				}
			}
			for n := range have {
				if ts.Get(n) == nil {
					removed = append(removed, n)
				}
			}
			w.set, w.initial = ts, nil
			if len(changed) == 0 && len(removed) == 0 {
				if w.nonceSent == "" {
					c.markResumedLocked(w, ver)
				}
				return nil
			}
			return c.finishLocked(w, changed, removed, ver, built)
		}
		if w.set != nil && w.set.Hash == ts.Hash && w.nonceSent != "" {
			return nil
		}
		if resume != "" && resume == ver {
			w.set = ts
			c.markResumedLocked(w, ver)
			return nil
		}
		w.set = ts
		return c.finishLocked(w, ts.Resources, nil, ver, built)
	}
	names := only
	if names == nil {
		names = w.names.names()
	}
	var changed []*translate.Resource
	var removed []string
	held := false // the client already holds some name at its current version
	for _, n := range names {
		cur, ok := w.names.get(n)
		if !ok {
			continue
		}
		r := c.lookup(st, w.typeURL, n)
		held = held || (cur != nil && r != nil && cur.Version == r.Version)
		switch {
		case r == nil:
			if c.delta && (cur != nil || contains(only, n)) {
				removed = append(removed, n)
			}
			w.names.set(n, nil)
		case cur == nil || cur.Version != r.Version:
			changed = append(changed, r)
			w.names.set(n, r)
		}
	}
	ver := c.namedVersionLocked(w)
	if !c.delta && resume != "" && resume == ver {
		c.markResumedLocked(w, ver)
		return nil
	}
	if !c.delta && isWildcardType(w.typeURL) && len(changed) > 0 {
		// In SotW, a CDS or LDS response replaces the whole set even when
		// the client subscribed by name (gRPC does): send every subscribed
		// resource that exists, not just the changed ones.
		changed = changed[:0]
		for _, e := range w.names.e {
			if e.res != nil {
				changed = append(changed, e.res)
			}
		}
	}
	if len(changed) == 0 && len(removed) == 0 {
		if c.delta && w.nonceSent == "" && held {
			// A delta client that reconnected holding every subscribed
			// name at its current version (initial_resource_versions): in
			// sync without a response, as for CDS and LDS.
			c.markResumedLocked(w, ver)
			return nil
		}
		if w.nonceSent == "" && !c.delta && resume == "" && only == nil {
			// SotW clients wait for an answer to their first request, even an
			// empty one.
			return c.finishLocked(w, nil, nil, ver, built)
		}
		return nil
	}
	return c.finishLocked(w, changed, removed, ver, built)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// namedVersionLocked is the SotW version_info of a named watch: an
// order-independent sum of the hashes of every subscribed name and the
// version sent for it, kept up to date as names change (no per-send sort),
// so a reconnecting client that holds the same set gets nothing resent.
func (c *Connection) namedVersionLocked(w *watch) string {
	return model.FormatHash(w.names.sum)
}

// nameHash is one subscribed name's share of a named watch's version.
func nameHash(n string, r *translate.Resource) uint64 {
	h := (&model.Hasher{}).Str(n)
	if r != nil {
		h.Str(r.Version)
	}
	return h.Sum()
}

func versionOf(rs []*translate.Resource) string {
	h := &model.Hasher{}
	for _, r := range rs {
		h.Str(r.Name).Str(r.Version)
	}
	return model.FormatHash(h.Sum())
}

func (c *Connection) markResumedLocked(w *watch, ver string) {
	w.nonceSent = "resumed"
	w.nonceAcked = "resumed"
	w.versionSent, w.versionAcked = ver, ver
	w.lastSent, w.lastAcked = time.Now(), time.Now()
}

func (c *Connection) finishLocked(w *watch, changed []*translate.Resource, removed []string, ver string, built time.Time) []outgoing {
	nonce := c.nextNonce()
	w.nonceSent, w.versionSent, w.lastSent = nonce, ver, time.Now()
	o := outgoing{w: w, count: len(changed) + len(removed), built: built}
	for _, r := range changed {
		o.bytes += len(r.Any.GetValue())
	}
	if c.delta {
		o.msg = encodeDelta(ver, w.typeURL, nonce, changed, removed)
	} else {
		o.msg = encodeSotw(ver, w.typeURL, nonce, changed)
	}
	return []outgoing{o}
}
