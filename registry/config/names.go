package config

import (
	"net/netip"
	"strconv"
	"strings"
)

// isDNSLabel reports whether s is an RFC 1123 label: 1-63 alphanumerics or
// '-', starting and ending with an alphanumeric. Upper case is accepted, as
// Istio accepts it in hosts.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// isLowerDNSLabel is isDNSLabel restricted to lower case, as Kubernetes
// requires for namespaces and as Istio requires for subset names.
func isLowerDNSLabel(s string) bool {
	return isDNSLabel(s) && strings.ToLower(s) == s
}

// isDNSSubdomain reports whether s is a lower-case RFC 1123 subdomain, as
// Kubernetes requires for object names.
func isDNSSubdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !isLowerDNSLabel(l) {
			return false
		}
	}
	return true
}

// isDNSName reports whether s is a DNS name without wildcards (a dotted
// sequence of labels, at most 255 characters).
func isDNSName(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !isDNSLabel(l) {
			return false
		}
	}
	return true
}

// checkWildcardHost validates a host that may start with a wildcard label
// ("*" or "*.example.com") and returns a reason when it is invalid.
func checkWildcardHost(h string) string {
	switch {
	case h == "":
		return "host must not be empty"
	case h == "*":
		return ""
	case strings.HasPrefix(h, "*."):
		if !isDNSName(h[2:]) {
			return "invalid wildcard host " + quote(h)
		}
		return ""
	case strings.Contains(h, "*"):
		return "invalid host " + quote(h) + ": a wildcard is only allowed as the whole first label"
	case strings.Contains(h, "/"):
		return "invalid host " + quote(h) + ": namespace prefixes are not allowed here"
	case !isDNSName(h):
		return "invalid host " + quote(h)
	}
	return ""
}

// isIP reports whether s is an IPv4 or IPv6 address.
func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// isIPOrCIDR reports whether s is an IP address or a CIDR prefix.
func isIPOrCIDR(s string) bool {
	if isIP(s) {
		return true
	}
	_, err := netip.ParsePrefix(s)
	return err == nil
}

// isUnixAddress reports whether s is a unix domain socket address.
func isUnixAddress(s string) bool {
	return strings.HasPrefix(s, "unix://") && len(s) > len("unix://")
}

func quote(s string) string { return strconv.Quote(s) }
