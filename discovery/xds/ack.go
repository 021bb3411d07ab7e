package xds

// The ACK state machine: requests update subscriptions, ACKs and NACKs
// resolve the pushes a watch is waiting on.

import (
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sextant-mesh/sextant/discovery/translate"
)

// handle processes one request from the proxy.
func (c *Connection) handle(r *request) error {
	s := c.s
	if r.typeURL == "" {
		return status.Error(codes.InvalidArgument, "request has no type_url")
	}
	if strings.HasPrefix(r.typeURL, "istio.io/debug") {
		return c.handleDebug(r)
	}
	c.mu.Lock()
	w := c.watches[r.typeURL]
	if r.hasError {
		s.metrics.Rejects.WithLabelValues(typeLabel(r.typeURL)).Inc()
		s.log.Warn("proxy rejected config (NACK)", "proxy", c.proxy.Name, "type", typeLabel(r.typeURL),
			"nonce", r.nonce, "error", r.errDetail)
		if w != nil {
			w.lastError = r.errDetail
			c.resolveLocked(w, true)
		}
		// Later versions still go out; a NACK is not retried on its own.
		c.updateSubscriptionLocked(w, r)
		c.mu.Unlock()
		return nil
	}
	if w == nil {
		w = &watch{typeURL: c.s.strings.get(r.typeURL)}
		if c.delta {
			w.wildcard = isWildcardType(r.typeURL) && len(r.subscribe) == 0
			for _, n := range r.subscribe {
				if n == "*" {
					w.wildcard = true
				}
			}
			if len(r.initial) > 0 {
				if w.wildcard {
					w.initial = r.initial
				}
			}
		} else {
			names := r.sotwNames(&c.s.strings)
			w.wildcard = isWildcardType(r.typeURL) && len(names) == 0
			for _, n := range names {
				if n == "*" {
					w.wildcard = true
				}
			}
		}
		c.watches[r.typeURL] = w
		c.updateSubscriptionLocked(w, r)
		if c.delta && !w.wildcard {
			for n, v := range r.initial {
				if w.names.has(n) {
					w.names.set(n, &translate.Resource{Name: n, Version: v})
				}
			}
		}
		sends := c.prepareLocked(w, nil, r.version)
		c.mu.Unlock()
		return c.sendAll(sends, nil)
	}
	if r.nonce != "" && r.nonce != w.nonceSent {
		s.metrics.ExpiredNonce.WithLabelValues(typeLabel(r.typeURL)).Inc()
		// A stale ACK; the proxy will answer the newer response. Delta
		// subscription changes still count.
		if c.delta {
			added := c.updateSubscriptionLocked(w, r)
			if len(added) > 0 {
				sends := c.prepareLocked(w, added, "")
				c.mu.Unlock()
				return c.sendAll(sends, nil)
			}
		}
		c.mu.Unlock()
		return nil
	}
	if r.nonce != "" {
		w.nonceAcked = w.nonceSent
		w.versionAcked = w.versionSent
		w.lastAcked = time.Now()
		w.lastError = ""
		c.resolveLocked(w, false)
	}
	added := c.updateSubscriptionLocked(w, r)
	var sends []outgoing
	switch {
	case r.nonce == "" && !c.delta:
		// A repeated initial request (e.g. after a client-side reset):
		// the client may have dropped what it had, so answer with
		// everything unless its version_info says it holds it.
		w.set = nil
		for _, n := range w.names.names() {
			w.names.set(n, nil)
		}
		w.nonceSent = ""
		sends = c.prepareLocked(w, nil, r.version)
	case len(added) > 0:
		sends = c.prepareLocked(w, added, "")
	}
	c.mu.Unlock()
	return c.sendAll(sends, nil)
}

// updateSubscriptionLocked applies the names of a request to w and returns
// the newly subscribed ones.
func (c *Connection) updateSubscriptionLocked(w *watch, r *request) []string {
	if w == nil || w.wildcard {
		return nil
	}
	if c.delta {
		var fresh []string
		for _, n := range r.subscribe {
			if n != "*" && !w.names.has(n) {
				fresh = append(fresh, c.s.strings.get(n))
			}
		}
		added := w.names.add(fresh)
		w.names.drop(r.unsubscribe)
		return added
	}
	if r.sameSubscription(w, c.s.seed) {
		return nil
	}
	if r.raw != nil {
		defer func() { w.subHash = r.namesHash(c.s.seed) }()
	}
	names := r.sotwNames(&c.s.strings)
	want := make(map[string]bool, len(names))
	var fresh []string
	for _, n := range names {
		want[n] = true
		if !w.names.has(n) {
			fresh = append(fresh, c.s.strings.get(n))
		}
	}
	added := w.names.add(fresh)
	if w.names.len() > len(want) {
		w.names.retain(func(n string) bool { return want[n] })
	}
	return added
}

// resolveLocked marks the pushes waiting on w as answered by this proxy.
func (c *Connection) resolveLocked(w *watch, nack bool) {
	for _, rec := range w.waiting {
		if nack {
			rec.mu.Lock()
			rec.nacks++
			rec.mu.Unlock()
		}
		c.holds[rec]--
		if c.holds[rec] <= 0 {
			delete(c.holds, rec)
			c.s.metrics.Convergence.Observe(time.Since(rec.Queued).Seconds())
			rec.release(c.s)
		}
	}
	w.waiting = nil
}

func (c *Connection) releaseAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for rec := range c.holds {
		rec.release(c.s)
	}
	c.holds = map[*PushRecord]int{}
	// Pending pushes never reached this proxy.
	if p := c.takePending(); p != nil {
		for _, rec := range p.records {
			rec.release(c.s)
		}
	}
}
