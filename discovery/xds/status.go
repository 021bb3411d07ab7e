package xds

// Sync status of a connection, for /debug/syncz and istioctl.

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sextant-mesh/sextant/discovery/translate"
)

// WatchStatus is the sync state of one type on one connection.
type WatchStatus struct {
	TypeURL      string    `json:"typeUrl"`
	NonceSent    string    `json:"nonceSent,omitempty"`
	NonceAcked   string    `json:"nonceAcked,omitempty"`
	VersionSent  string    `json:"versionSent,omitempty"`
	VersionAcked string    `json:"versionAcked,omitempty"`
	LastError    string    `json:"lastError,omitempty"`
	LastSent     time.Time `json:"lastSent,omitempty"`
	LastAcked    time.Time `json:"lastAcked,omitempty"`
	Resources    int       `json:"resources"`
	Status       string    `json:"status"`
}

// Status values, as istioctl prints them.
const (
	StatusSynced  = "SYNCED"
	StatusStale   = "STALE"
	StatusNack    = "NACK"
	StatusNotSent = "NOT SENT"
)

// Watches returns the sync state of every watched type.
func (c *Connection) Watches() []WatchStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []WatchStatus
	for _, t := range pushOrder {
		w := c.watches[t]
		if w == nil {
			continue
		}
		ws := WatchStatus{TypeURL: t, NonceSent: w.nonceSent, NonceAcked: w.nonceAcked, VersionSent: w.versionSent,
			VersionAcked: w.versionAcked, LastError: w.lastError, LastSent: w.lastSent, LastAcked: w.lastAcked}
		ws.Resources = len(c.sentLocked(w))
		switch {
		case w.lastError != "":
			ws.Status = StatusNack
		case w.nonceSent == "":
			ws.Status = StatusNotSent
		case w.nonceSent == w.nonceAcked:
			ws.Status = StatusSynced
		default:
			ws.Status = StatusStale
		}
		out = append(out, ws)
	}
	return out
}

func (c *Connection) sentLocked(w *watch) []*translate.Resource {
	if w.wildcard {
		if w.set == nil {
			return nil
		}
		return w.set.Resources
	}
	var out []*translate.Resource
	for _, e := range w.names.e {
		if e.res != nil && e.res.Any != nil {
			out = append(out, e.res)
		}
	}
	sortResources(out)
	return out
}

// Sent returns the resources last sent to the proxy for a type, as
// messages, sorted by name.
func (c *Connection) Sent(typeURL string) []proto.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.watches[typeURL]
	if w == nil {
		return nil
	}
	var out []proto.Message
	for _, r := range c.sentLocked(w) {
		out = append(out, redact(r.Msg))
	}
	return out
}
