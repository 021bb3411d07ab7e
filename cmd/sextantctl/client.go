package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sextant-mesh/sextant/api/debug"
)

// maxBody bounds what the client reads from one debug response.
const maxBody = 256 << 20

// debugClient reads Sextant's JSON debug API on the monitoring port.
type debugClient struct {
	addr   string // as the user gave it
	source string // where addr came from: --addr, SEXTANT_ADDR or default
	base   *url.URL
	http   *http.Client
}

// newDebugClient accepts host:port, :port or an http(s) URL.
func newDebugClient(addr, source string, timeout time.Duration) (*debugClient, error) {
	raw := addr
	if !strings.Contains(raw, "://") {
		if strings.HasPrefix(raw, ":") {
			raw = "localhost" + raw
		}
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, &usageError{fmt.Errorf("invalid control plane address %q (from %s): want host:port, e.g. %s", addr, source, defaultAddr)}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &debugClient{
		addr: addr, source: source, base: u,
		http: &http.Client{Timeout: timeout},
	}, nil
}

// unreachableError says the control plane could not be reached at all.
type unreachableError struct {
	addr, source string
	err          error
}

func (e *unreachableError) Error() string {
	from := "the default"
	switch e.source {
	case "--addr", addrEnv:
		from = "set by " + e.source
	}
	return fmt.Sprintf("cannot connect to the Sextant control plane at %s (%s): %v\n"+
		"Set its monitoring address (sextant serve --monitoring-addr) with --addr host:port or %s=host:port.",
		e.addr, from, e.err, addrEnv)
}

func (e *unreachableError) Unwrap() error { return e.err }

// httpError is a non-200 answer.
type httpError struct {
	path   string
	status int
	text   string
	body   string
}

func (e *httpError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("GET %s: %s", e.path, e.text)
	}
	return fmt.Sprintf("GET %s: %s: %s", e.path, e.text, e.body)
}

// getRaw fetches path (with query) and returns the body of a 200 answer.
func (c *debugClient) getRaw(ctx context.Context, path string, query url.Values) ([]byte, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	shown := path
	if u.RawQuery != "" {
		shown += "?" + u.RawQuery
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", shown, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("GET %s: %w", shown, ctx.Err())
		}
		return nil, &unreachableError{addr: c.addr, source: c.source, err: describeDialError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("GET %s from %s: read response: %w", shown, c.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &httpError{path: shown, status: resp.StatusCode, text: resp.Status, body: strings.TrimSpace(string(body))}
	}
	return body, nil
}

// describeDialError strips net/http's "Get \"url\":" prefix, which repeats
// what the caller already says.
func describeDialError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return fmt.Errorf("no answer in time (raise --timeout if the control plane is busy): %w", err)
	}
	return err
}

// getJSON fetches path and decodes the JSON answer into v.
func (c *debugClient) getJSON(ctx context.Context, path string, query url.Values, v any) error {
	body, err := c.getRaw(ctx, path, query)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode %s from %s: %w (is %s Sextant's monitoring port?)", path, c.addr, err, c.addr)
	}
	return nil
}

// Syncz returns every connected proxy's sync state.
func (c *debugClient) Syncz(ctx context.Context) ([]debug.SyncStatus, error) {
	var out []debug.SyncStatus
	err := c.getJSON(ctx, "/debug/syncz", nil, &out)
	return out, err
}

// ConfigDump returns what a proxy was last sent: Envoy's admin ConfigDump
// JSON.
func (c *debugClient) ConfigDump(ctx context.Context, proxy string) ([]byte, error) {
	body, err := c.getRaw(ctx, "/debug/config_dump", url.Values{"proxyID": {proxy}})
	var herr *httpError
	if errors.As(err, &herr) {
		switch herr.status {
		case http.StatusNotFound:
			return nil, fmt.Errorf("proxy %q not found: not connected to the control plane at %s; "+
				"proxies are named <pod>.<namespace>, 'sextantctl proxy-status' lists them", proxy, c.addr)
		case http.StatusConflict:
			return nil, fmt.Errorf("proxy %q: %s", proxy, herr.body)
		}
	}
	return body, err
}

// PushLog returns the recent pushes, oldest first.
func (c *debugClient) PushLog(ctx context.Context) ([]debug.PushRecord, error) {
	var out []debug.PushRecord
	err := c.getJSON(ctx, "/debug/push_log", nil, &out)
	return out, err
}

// Version returns the server's version and instance.
func (c *debugClient) Version(ctx context.Context) (*debug.Version, error) {
	var out debug.Version
	if err := c.getJSON(ctx, "/debug/version", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
