package v1

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem with a record.
type FieldError struct {
	// Field is the JSON path of the offending value, e.g. "ports[0].number"
	// or `labels["app"]`; empty for the record as a whole.
	Field   string
	Message string
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Errors is every problem found in one record. Decode and Validate return
// it (as an error) when a record is invalid.
type Errors []FieldError

func (e Errors) Error() string {
	msgs := make([]string, len(e))
	for i, fe := range e {
		msgs[i] = fe.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e *Errors) add(field, format string, args ...any) {
	*e = append(*e, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (e Errors) err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

var (
	serviceFields  = []string{"apiVersion", "kind", "host", "namespace", "ports", "addresses", "labels", "exportTo", "resolution", "keepaliveShare"}
	portFields     = []string{"name", "number", "protocol", "targetPort"}
	instanceFields = []string{"apiVersion", "kind", "address", "ports", "labels", "locality", "weight", "serviceAccount", "health", "network"}
)

// DecodeService strictly decodes and validates a service record.
func DecodeService(data []byte) (*Service, error) {
	var errs Errors
	top := decodeObject(data, serviceFields, &errs)
	if top != nil {
		if raw, ok := top["ports"]; ok {
			var ports []map[string]json.RawMessage
			if json.Unmarshal(raw, &ports) == nil {
				for i, p := range ports {
					checkFields(p, portFields, idx("ports", i)+".", &errs)
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	s := &Service{}
	if err := decodeInto(data, s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// DecodeInstance strictly decodes and validates an instance record.
func DecodeInstance(data []byte) (*Instance, error) {
	// Instances are many: check field names with a scan of the top-level
	// keys rather than a second full decode.
	var errs Errors
	if !topLevelKeys(data, func(k []byte) {
		switch string(k) {
		case "apiVersion", "kind", "address", "ports", "labels", "locality", "weight", "serviceAccount", "health", "network":
		default:
			errs.add(string(k), "unknown field %q", k)
		}
	}) {
		decodeObject(data, instanceFields, &errs) // reports what is wrong
	}
	if len(errs) > 0 {
		return nil, errs
	}
	in := &Instance{}
	if err := decodeInto(data, in); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return in, nil
}

// decodeObject decodes the top level of a record and reports fields that
// are not in allowed (compared case-sensitively, unlike encoding/json).
func decodeObject(data []byte, allowed []string, errs *Errors) map[string]json.RawMessage {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			errs.add("", "invalid JSON at offset %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
		} else {
			errs.add("", "record must be a JSON object")
		}
		return nil
	}
	if top == nil {
		errs.add("", "record must be a JSON object")
		return nil
	}
	checkFields(top, allowed, "", errs)
	return top
}

// topLevelKeys calls fn with the raw bytes of every key of the JSON object
// in data, without decoding values. It returns false if data does not look
// like a JSON object; it does not validate the rest, decoding does that.
func topLevelKeys(data []byte, fn func(key []byte)) bool {
	i := 0
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	if i == len(data) || data[i] != '{' {
		return false
	}
	depth, wantKey := 0, false
	for ; i < len(data); i++ {
		switch data[i] {
		case '"':
			j := i + 1
			for j < len(data) && data[j] != '"' {
				if data[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(data) {
				return false
			}
			if depth == 1 && wantKey {
				fn(data[i+1 : j])
				wantKey = false
			}
			i = j
		case '{':
			depth++
			wantKey = depth == 1
		case '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			wantKey = depth == 1
		}
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func checkFields(m map[string]json.RawMessage, allowed []string, prefix string, errs *Errors) {
	var unknown []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs.add(prefix+k, "unknown field %q", k)
	}
}

// decodeInto decodes a record whose field names have been checked.
func decodeInto(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Errors{{Field: te.Field, Message: fmt.Sprintf("cannot use a JSON %s as %s", te.Value, te.Type)}}
		}
		return Errors{{Message: strings.TrimPrefix(err.Error(), "json: ")}}
	}
	return nil
}

func checkHeader(errs *Errors, apiVersion, kind, wantKind string) {
	switch apiVersion {
	case APIVersion:
	case "":
		errs.add("apiVersion", "apiVersion is required (%s)", APIVersion)
	default:
		errs.add("apiVersion", "unsupported apiVersion %q, want %s", apiVersion, APIVersion)
	}
	if kind != "" && kind != wantKind {
		errs.add("kind", "kind %q does not match the key, want %s", kind, wantKind)
	}
}

// Validate checks a service record on its own.
func (s *Service) Validate() error {
	var errs Errors
	checkHeader(&errs, s.APIVersion, s.Kind, KindService)
	if !isLowerDNSName(s.Host) {
		errs.add("host", "host %q must be a lower-case DNS name", s.Host)
	}
	if !isLowerDNSLabel(s.Namespace) {
		errs.add("namespace", "namespace %q must be a lower-case DNS label", s.Namespace)
	}
	if len(s.Ports) == 0 {
		errs.add("ports", "at least one port is required")
	}
	names := map[string]int{}
	numbers := map[uint32]int{}
	for i, p := range s.Ports {
		f := idx("ports", i)
		if !isLowerDNSLabel(p.Name) {
			errs.add(f+".name", "port name %q must be a lower-case DNS label", p.Name)
		} else if j, dup := names[p.Name]; dup {
			errs.add(f+".name", "port name %q is also used by ports[%d]", p.Name, j)
		} else {
			names[p.Name] = i
		}
		checkPort(&errs, f+".number", p.Number)
		if j, dup := numbers[p.Number]; dup {
			errs.add(f+".number", "port number %d is also used by ports[%d]", p.Number, j)
		} else {
			numbers[p.Number] = i
		}
		if p.Protocol != "" && !IsProtocol(p.Protocol) {
			errs.add(f+".protocol", "unknown protocol %q (want one of %s)", p.Protocol, strings.Join(Protocols, ", "))
		}
		if p.TargetPort > 65535 {
			errs.add(f+".targetPort", "port number %d is out of range 0-65535", p.TargetPort)
		}
	}
	for i, a := range s.Addresses {
		checkIP(&errs, idx("addresses", i), a)
	}
	checkLabels(&errs, "labels", s.Labels)
	seen := map[string]bool{}
	for i, e := range s.ExportTo {
		f := idx("exportTo", i)
		switch {
		case seen[e]:
			errs.add(f, "%q is listed twice", e)
		case e == "~" && len(s.ExportTo) > 1:
			errs.add(f, `"~" (export to no namespace) must be the only entry`)
		case e == "." || e == "*" || e == "~" || isLowerDNSLabel(e):
		default:
			errs.add(f, `%q must be ".", "*", "~" or a namespace`, e)
		}
		seen[e] = true
	}
	switch s.Resolution {
	case "", ResolutionStatic, ResolutionDNS, ResolutionDNSRoundRobin, ResolutionNone:
	default:
		errs.add("resolution", "unknown resolution %q (want %s, %s, %s or %s)", s.Resolution,
			ResolutionStatic, ResolutionDNS, ResolutionDNSRoundRobin, ResolutionNone)
	}
	if math.IsNaN(s.KeepaliveShare) || s.KeepaliveShare < 0 || s.KeepaliveShare >= 1 {
		errs.add("keepaliveShare", "keepaliveShare %v must be at least 0 and less than 1", s.KeepaliveShare)
	}
	return errs.err()
}

// Validate checks an instance record on its own.
func (in *Instance) Validate() error {
	var errs Errors
	checkHeader(&errs, in.APIVersion, in.Kind, KindInstance)
	if in.Address == "" {
		errs.add("address", "address is required")
	} else {
		checkIP(&errs, "address", in.Address)
	}
	for _, name := range slices.Sorted(maps.Keys(in.Ports)) {
		f := key("ports", name)
		if !isLowerDNSLabel(name) {
			errs.add(f, "port name %q must be a lower-case DNS label", name)
		}
		checkPort(&errs, f, in.Ports[name])
	}
	checkLabels(&errs, "labels", in.Labels)
	if st, ok := in.Labels[TrafficStateLabel]; ok && st != StateRunning && st != StateKeepalive {
		errs.add(key("labels", TrafficStateLabel), "traffic state %q must be %s or %s", st, StateRunning, StateKeepalive)
	}
	if in.Locality != "" {
		parts := strings.Split(in.Locality, "/")
		if len(parts) > 3 || strings.ContainsAny(in.Locality, " \t\r\n") {
			errs.add("locality", "locality %q must be region[/zone[/subzone]] without spaces", in.Locality)
		}
	}
	if in.Weight > MaxWeight {
		errs.add("weight", "weight %d is more than %d", in.Weight, MaxWeight)
	}
	if in.ServiceAccount != "" && !isLowerDNSName(in.ServiceAccount) {
		errs.add("serviceAccount", "service account %q must be a lower-case DNS name", in.ServiceAccount)
	}
	switch in.Health {
	case "", HealthHealthy, HealthUnhealthy, HealthDraining:
	default:
		errs.add("health", "health %q must be %s, %s or %s", in.Health, HealthHealthy, HealthUnhealthy, HealthDraining)
	}
	if in.Network != "" && !isLabelValue(in.Network) {
		errs.add("network", "network %q must be at most 63 letters, digits, '-', '_' or '.'", in.Network)
	}
	return errs.err()
}

// CheckService reports whether a service record may be stored at k.
func (k Key) CheckService(s *Service) error {
	var errs Errors
	if k.Type != KeyService {
		errs.add("", "key is not a service key")
	}
	if s.Host != k.Host {
		errs.add("host", "host %q does not match the key's host %q", s.Host, k.Host)
	}
	if s.Namespace != k.Namespace {
		errs.add("namespace", "namespace %q does not match the key's namespace %q", s.Namespace, k.Namespace)
	}
	return errs.err()
}

// CheckInstance reports whether an instance record may be stored at k.
func (k Key) CheckInstance(in *Instance) error {
	if k.Type != KeyInstance {
		return Errors{{Message: "key is not an instance key"}}
	}
	if err := CheckInstanceName(k.Instance, in.Address); err != nil {
		return Errors{{Field: "address", Message: err.Error()}}
	}
	return nil
}

// Protocols are the port protocols a service may name (matched without
// regard to case).
var Protocols = []string{"HTTP", "HTTP2", "GRPC", "GRPC-Web", "HTTPS", "TLS", "TCP", "UDP", "Mongo", "Redis", "MySQL"}

// IsProtocol reports whether p names one of Protocols.
func IsProtocol(p string) bool {
	for _, q := range Protocols {
		if strings.EqualFold(p, q) {
			return true
		}
	}
	return false
}

func checkPort(errs *Errors, field string, n uint32) {
	if n < 1 || n > 65535 {
		errs.add(field, "port number %d is out of range 1-65535", n)
	}
}

func checkIP(errs *Errors, field, s string) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		errs.add(field, "%q is not an IP address", s)
	case a.Zone() != "":
		errs.add(field, "%q must not have a zone", s)
	case a.IsUnspecified():
		errs.add(field, "%q is the unspecified address", s)
	case a.String() != s:
		errs.add(field, "%q must be written in canonical form %q", s, a.String())
	}
}

// checkLabels applies Kubernetes label syntax: keys are [prefix/]name with a
// DNS subdomain prefix and a name of up to 63 characters; values are empty
// or up to 63 characters; names and values start and end alphanumeric and
// contain alphanumerics, '-', '_' and '.'.
func checkLabels(errs *Errors, field string, labels map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		f := key(field, k)
		name := k
		if p, n, ok := strings.Cut(k, "/"); ok {
			if !isLowerDNSName(p) {
				errs.add(f, "label key prefix %q must be a lower-case DNS name", p)
			}
			name = n
		}
		if name == "" || !isLabelValue(name) {
			errs.add(f, "label key %q: name must be 1-63 letters, digits, '-', '_' or '.', starting and ending alphanumeric", k)
		}
		if v := labels[k]; v != "" && !isLabelValue(v) {
			errs.add(f, "label value %q must be at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric", v)
		}
	}
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// isLabelValue reports whether s is a non-empty Kubernetes label value.
func isLabelValue(s string) bool {
	if len(s) == 0 || len(s) > 63 || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// isLowerDNSLabel reports whether s is a lower-case RFC 1123 label.
func isLowerDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// isLowerDNSName reports whether s is a dotted sequence of lower-case
// labels, at most 253 characters.
func isLowerDNSName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !isLowerDNSLabel(l) {
			return false
		}
	}
	return true
}

func idx(f string, i int) string { return f + "[" + strconv.Itoa(i) + "]" }

func key(f, k string) string { return f + "[" + strconv.Quote(k) + "]" }
