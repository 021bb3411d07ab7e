package v1

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the key prefix used when none is configured.
const DefaultPrefix = "/sextant"

// Key segments after the prefix.
const (
	servicesSegment  = "/v1/services/"
	instancesSegment = "/v1/instances/"
	istioSegment     = "/istio/"
)

// NormalizePrefix checks a key prefix and returns it without a trailing
// slash: "" means DefaultPrefix, "/" means the root of the key space (which
// is returned as ""). A prefix must start with '/'.
func NormalizePrefix(prefix string) (string, error) {
	if prefix == "" {
		return DefaultPrefix, nil
	}
	if !strings.HasPrefix(prefix, "/") {
		return "", fmt.Errorf("key prefix %q must start with '/'", prefix)
	}
	if strings.Contains(prefix, "//") {
		return "", fmt.Errorf("key prefix %q must not contain an empty segment", prefix)
	}
	return strings.TrimRight(prefix, "/"), nil
}

// WatchPrefix returns the prefix of every key of the schema under prefix
// (with a trailing slash, so "/sextant" does not match "/sextant2/...").
func WatchPrefix(prefix string) string { return prefix + "/" }

// ServicesPrefix returns the prefix of all service keys.
func ServicesPrefix(prefix string) string { return prefix + servicesSegment }

// ServiceKey returns the key of a service record.
func ServiceKey(prefix, namespace, host string) string {
	return prefix + servicesSegment + namespace + "/" + host
}

// AllInstancesPrefix returns the prefix of all instance keys.
func AllInstancesPrefix(prefix string) string { return prefix + instancesSegment }

// InstancesPrefix returns the prefix of the instance keys of one service.
func InstancesPrefix(prefix, namespace, host string) string {
	return prefix + instancesSegment + namespace + "/" + host + "/"
}

// InstanceKey returns the key of an instance record; instance is the last
// segment, see InstanceName.
func InstanceKey(prefix, namespace, host, instance string) string {
	return InstancesPrefix(prefix, namespace, host) + instance
}

// InstanceName returns the last segment of an instance key: the address, or
// the address, ':' and id when id is not empty.
func InstanceName(address, id string) string {
	if id == "" {
		return address
	}
	return address + ":" + id
}

// IstioPrefix returns the prefix of the keys holding Istio documents.
func IstioPrefix(prefix string) string { return prefix + istioSegment }

// KeyType says what a key holds.
type KeyType int

// Key types.
const (
	// KeyUnknown is a key under the prefix that this schema does not
	// define (for example one of a later schema version).
	KeyUnknown KeyType = iota
	KeyService
	KeyInstance
	KeyIstio
)

func (t KeyType) String() string {
	switch t {
	case KeyService:
		return KindService
	case KeyInstance:
		return KindInstance
	case KeyIstio:
		return "Istio"
	}
	return "unknown"
}

// Key is a parsed key.
type Key struct {
	Type KeyType
	// Namespace and Host of a service or instance key.
	Namespace string
	Host      string
	// Instance is the last segment of an instance key.
	Instance string
	// Name is what follows <prefix>/istio/ in an Istio key.
	Name string
}

// ParseKey parses a key under prefix (as NormalizePrefix returns it). A key
// outside the v1 and istio segments is KeyUnknown; a key inside them that
// does not have the expected segments is an error.
func ParseKey(prefix, key string) (Key, error) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok || !strings.HasPrefix(rest, "/") {
		return Key{}, fmt.Errorf("key %q is not under prefix %q", key, prefix)
	}
	switch {
	case strings.HasPrefix(rest, servicesSegment):
		ns, host, ok := strings.Cut(rest[len(servicesSegment):], "/")
		if !ok || strings.Contains(host, "/") {
			return Key{}, fmt.Errorf("service key must be %s<namespace>/<host>", ServicesPrefix(prefix))
		}
		k := Key{Type: KeyService, Namespace: ns, Host: host}
		return k, k.checkService()
	case strings.HasPrefix(rest, instancesSegment):
		ns, rest, ok1 := strings.Cut(rest[len(instancesSegment):], "/")
		host, inst, ok2 := strings.Cut(rest, "/")
		if !ok1 || !ok2 || strings.Contains(inst, "/") {
			return Key{}, fmt.Errorf("instance key must be %s<namespace>/<host>/<address>[:<id>]", AllInstancesPrefix(prefix))
		}
		k := Key{Type: KeyInstance, Namespace: ns, Host: host, Instance: inst}
		if err := k.checkService(); err != nil {
			return Key{}, err
		}
		if k.Instance == "" {
			return Key{}, fmt.Errorf("instance key must end in <address>[:<id>]")
		}
		return k, nil
	case strings.HasPrefix(rest, istioSegment):
		name := rest[len(istioSegment):]
		if name == "" {
			return Key{}, fmt.Errorf("istio key must name a document after %s", IstioPrefix(prefix))
		}
		return Key{Type: KeyIstio, Name: name}, nil
	}
	return Key{Type: KeyUnknown}, nil
}

func (k Key) checkService() error {
	if !isLowerDNSLabel(k.Namespace) {
		return fmt.Errorf("namespace %q in key is not a lower-case DNS label", k.Namespace)
	}
	if !isLowerDNSName(k.Host) {
		return fmt.Errorf("host %q in key is not a lower-case DNS name", k.Host)
	}
	return nil
}

// CheckInstanceName reports whether name, the last segment of an instance
// key, belongs to address: it must be the address or "<address>:<id>".
func CheckInstanceName(name, address string) error {
	if name == address {
		return nil
	}
	id, ok := strings.CutPrefix(name, address+":")
	if !ok {
		return fmt.Errorf("key must end in the instance's address %q, optionally followed by :<id>, not %q", address, name)
	}
	if !isID(id) {
		return fmt.Errorf("instance id %q in key must be letters, digits, '.', '_' or '-'", id)
	}
	return nil
}

func isID(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}
