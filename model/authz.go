package model

import "strings"

// AuthzConditionKeySupported reports whether an AuthorizationPolicy `when`
// key is one Sextant translates (Istio's attribute list). Validation warns
// about the others; translation fails closed on them.
func AuthzConditionKeySupported(k string) bool {
	switch k {
	case "source.ip", "remote.ip", "source.namespace", "source.principal", "request.auth.principal",
		"request.auth.audiences", "request.auth.presenter", "destination.ip", "destination.port", "connection.sni":
		return true
	}
	if rest, ok := strings.CutPrefix(k, "request.headers"); ok {
		names, ok := bracketed(rest)
		return ok && len(names) == 1
	}
	if rest, ok := strings.CutPrefix(k, "request.auth.claims"); ok {
		_, ok := bracketed(rest)
		return ok
	}
	if rest, ok := strings.CutPrefix(k, "experimental.envoy.filters."); ok {
		i := strings.IndexByte(rest, '[')
		if i <= 0 {
			return false
		}
		names, ok := bracketed(rest[i:])
		return ok && len(names) == 1
	}
	return false
}

// bracketed parses "[a]" or "[a][b]…".
func bracketed(s string) ([]string, bool) {
	var out []string
	for s != "" {
		if s[0] != '[' {
			return nil, false
		}
		end := strings.IndexByte(s, ']')
		if end < 2 || strings.Contains(s[1:end], "[") {
			return nil, false
		}
		out = append(out, s[1:end])
		s = s[end+1:]
	}
	return out, len(out) > 0
}
