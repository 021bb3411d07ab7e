package v1

import (
	"strings"
	"testing"
)

func TestDecodeService(t *testing.T) {
	const ok = `{"apiVersion":"sextant.io/v1","kind":"Service","host":"echo.example.com","namespace":"default",
		"ports":[{"name":"http","number":8080,"protocol":"http","targetPort":18080}],
		"addresses":["10.96.0.10"],"labels":{"app":"echo"},"exportTo":["."],"resolution":"STATIC","keepaliveShare":0.05}`
	s, err := DecodeService([]byte(ok))
	if err != nil {
		t.Fatalf("valid service: %v", err)
	}
	if s.Ports[0].TargetPort != 18080 || s.KeepaliveShare != 0.05 {
		t.Errorf("decoded %+v", s)
	}
	for _, tc := range []struct{ name, json, want string }{
		{"not JSON", `{"apiVersion":`, "invalid JSON"},
		{"array", `[]`, "record must be a JSON object"},
		{"null", `null`, "record must be a JSON object"},
		{"unknown field", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1}],"hosts":[]}`, `hosts: unknown field "hosts"`},
		{"wrong case", `{"apiVersion":"sextant.io/v1","Host":"a","namespace":"b","ports":[{"name":"p","number":1}]}`, `Host: unknown field "Host"`},
		{"unknown port field", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1,"nmber":2}]}`, `ports[0].nmber: unknown field`},
		{"trailing data", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1}]} {}`, "invalid JSON"},
		{"wrong type", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":"80"}]}`, "ports.number: cannot use a JSON string as uint32"},
		{"negative", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":-1}]}`, "cannot use a JSON number -1 as uint32"},
		{"version", `{"apiVersion":"sextant.io/v2","host":"a","namespace":"b","ports":[{"name":"p","number":1}]}`, `apiVersion: unsupported apiVersion "sextant.io/v2"`},
		{"no version", `{"host":"a","namespace":"b","ports":[{"name":"p","number":1}]}`, "apiVersion: apiVersion is required"},
		{"kind", `{"apiVersion":"sextant.io/v1","kind":"Instance","host":"a","namespace":"b","ports":[{"name":"p","number":1}]}`, `kind: kind "Instance" does not match`},
		{"host", `{"apiVersion":"sextant.io/v1","host":"A_b","namespace":"b","ports":[{"name":"p","number":1}]}`, `host: host "A_b" must be a lower-case DNS name`},
		{"wildcard", `{"apiVersion":"sextant.io/v1","host":"*.b","namespace":"b","ports":[{"name":"p","number":1}]}`, `must be a lower-case DNS name`},
		{"namespace", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b.c","ports":[{"name":"p","number":1}]}`, `namespace: namespace "b.c"`},
		{"no ports", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b"}`, "ports: at least one port is required"},
		{"port range", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":65536}]}`, "ports[0].number: port number 65536 is out of range 1-65535"},
		{"port zero", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":0}]}`, "out of range"},
		{"dup name", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1},{"name":"p","number":2}]}`, `ports[1].name: port name "p" is also used by ports[0]`},
		{"dup number", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1},{"name":"q","number":1}]}`, "is also used"},
		{"protocol", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1,"protocol":"SMTP"}]}`, `unknown protocol "SMTP"`},
		{"target", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1,"targetPort":70000}]}`, "targetPort"},
		{"address", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1}],"addresses":["10.0.0.0/8"]}`, `addresses[0]: "10.0.0.0/8" is not an IP address`},
		{"label", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1}],"labels":{"-x":"y"}}`, `labels["-x"]`},
		{"exportTo", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1}],"exportTo":["~","."]}`, `exportTo[0]`},
		{"resolution", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1}],"resolution":"dns"}`, `unknown resolution "dns"`},
		{"share", `{"apiVersion":"sextant.io/v1","host":"a","namespace":"b","ports":[{"name":"p","number":1}],"keepaliveShare":1}`, "keepaliveShare 1 must be"},
	} {
		_, err := DecodeService([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestDecodeInstance(t *testing.T) {
	const ok = `{"apiVersion":"sextant.io/v1","address":"fd00::7","ports":{"http":18080},
		"labels":{"version":"v1","traffic.sextant.io/state":"keepalive","example.com/team":""},
		"locality":"eu/eu-1/a","weight":2,"serviceAccount":"echo","health":"draining","network":"net-1"}`
	if _, err := DecodeInstance([]byte(ok)); err != nil {
		t.Fatalf("valid instance: %v", err)
	}
	for _, tc := range []struct{ name, json, want string }{
		{"no address", `{"apiVersion":"sextant.io/v1"}`, "address: address is required"},
		{"dns address", `{"apiVersion":"sextant.io/v1","address":"a.example.com"}`, "is not an IP address"},
		{"canonical", `{"apiVersion":"sextant.io/v1","address":"FD00::7"}`, `canonical form "fd00::7"`},
		{"unspecified", `{"apiVersion":"sextant.io/v1","address":"0.0.0.0"}`, "unspecified"},
		{"zone", `{"apiVersion":"sextant.io/v1","address":"fe80::1%eth0"}`, "zone"},
		{"port", `{"apiVersion":"sextant.io/v1","address":"10.0.0.1","ports":{"http":0}}`, `ports["http"]: port number 0`},
		{"port name", `{"apiVersion":"sextant.io/v1","address":"10.0.0.1","ports":{"HTTP":80}}`, `port name "HTTP"`},
		{"state", `{"apiVersion":"sextant.io/v1","address":"10.0.0.1","labels":{"traffic.sextant.io/state":"off"}}`, `traffic state "off"`},
		{"label value", `{"apiVersion":"sextant.io/v1","address":"10.0.0.1","labels":{"a":"b c"}}`, `label value "b c"`},
		{"locality", `{"apiVersion":"sextant.io/v1","address":"10.0.0.1","locality":"a/b/c/d"}`, "locality"},
		{"weight", `{"apiVersion":"sextant.io/v1","address":"10.0.0.1","weight":16777217}`, "weight 16777217 is more than"},
		{"health", `{"apiVersion":"sextant.io/v1","address":"10.0.0.1","health":"HEALTHY"}`, `health "HEALTHY"`},
		{"sa", `{"apiVersion":"sextant.io/v1","address":"10.0.0.1","serviceAccount":"Echo"}`, "service account"},
		{"network", `{"apiVersion":"sextant.io/v1","address":"10.0.0.1","network":"a/b"}`, "network"},
		{"unknown", `{"apiVersion":"sextant.io/v1","address":"10.0.0.1","host":"x"}`, `host: unknown field "host"`},
	} {
		_, err := DecodeInstance([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestKeys(t *testing.T) {
	p, err := NormalizePrefix("/mesh/")
	if err != nil || p != "/mesh" {
		t.Fatalf("NormalizePrefix = %q, %v", p, err)
	}
	for _, bad := range []string{"mesh", "/a//b"} {
		if _, err := NormalizePrefix(bad); err == nil {
			t.Errorf("NormalizePrefix(%q) accepted", bad)
		}
	}
	if p, _ := NormalizePrefix(""); p != DefaultPrefix {
		t.Errorf("default prefix %q", p)
	}
	for _, tc := range []struct {
		key  string
		want Key
		err  string
	}{
		{key: "/mesh/v1/services/default/a.example.com", want: Key{Type: KeyService, Namespace: "default", Host: "a.example.com"}},
		{key: "/mesh/v1/instances/default/a.example.com/10.0.0.1:x", want: Key{Type: KeyInstance, Namespace: "default", Host: "a.example.com", Instance: "10.0.0.1:x"}},
		{key: "/mesh/istio/dir/se.yaml", want: Key{Type: KeyIstio, Name: "dir/se.yaml"}},
		{key: "/mesh/v2/whatever", want: Key{Type: KeyUnknown}},
		{key: "/mesh/v1/services/default", err: "service key must be"},
		{key: "/mesh/v1/services/default/a/b", err: "service key must be"},
		{key: "/mesh/v1/instances/default/a.example.com/", err: "must end in"},
		{key: "/mesh/v1/instances/default/A/1.2.3.4", err: `host "A"`},
		{key: "/mesh/istio/", err: "must name a document"},
		{key: "/other/v1/services/a/b", err: "not under prefix"},
		{key: "/meshy/v1/services/a/b", err: "not under prefix"},
	} {
		got, err := ParseKey("/mesh", tc.key)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseKey(%s) error %v, want %q", tc.key, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseKey(%s) = %+v, %v; want %+v", tc.key, got, err, tc.want)
		}
	}
	if ServiceKey("/mesh", "ns", "h") != "/mesh/v1/services/ns/h" ||
		InstanceKey("/mesh", "ns", "h", InstanceName("fd00::1", "w-2")) != "/mesh/v1/instances/ns/h/fd00::1:w-2" ||
		IstioPrefix("/mesh") != "/mesh/istio/" {
		t.Error("key builders disagree with the documented layout")
	}
	for _, tc := range []struct {
		name, addr string
		ok         bool
	}{
		{"10.0.0.1", "10.0.0.1", true},
		{"10.0.0.1:a-1", "10.0.0.1", true},
		{"fd00::1:w", "fd00::1", true},
		{"10.0.0.1:", "10.0.0.1", false},
		{"10.0.0.1:a b", "10.0.0.1", false},
		{"10.0.0.12", "10.0.0.1", false},
	} {
		if err := CheckInstanceName(tc.name, tc.addr); (err == nil) != tc.ok {
			t.Errorf("CheckInstanceName(%q, %q) = %v", tc.name, tc.addr, err)
		}
	}
}

func TestTopLevelKeys(t *testing.T) {
	for _, tc := range []struct {
		json string
		want string
		ok   bool
	}{
		{`{"a":1,"b":{"c":[{"d":2}],"e":"x,\"y\":"},"f":[1,{"g":3}], "h" : null}`, "a,b,f,h", true},
		{` {"a\"b":"}"}`, `a\"b`, true},
		{`{}`, "", true},
		{`[{"a":1}]`, "", false},
		{`{"a`, "", false},
	} {
		var keys []string
		ok := topLevelKeys([]byte(tc.json), func(k []byte) { keys = append(keys, string(k)) })
		if got := strings.Join(keys, ","); ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("%s: keys %q ok=%v, want %q ok=%v", tc.json, got, ok, tc.want, tc.ok)
		}
	}
}
