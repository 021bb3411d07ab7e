package spiffe_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/sextant-mesh/sextant/ca/spiffe"
)

func TestParseAndFormat(t *testing.T) {
	id, err := spiffe.Parse("spiffe://cluster.local/ns/default/sa/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if id != (spiffe.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "sleep"}) {
		t.Errorf("parsed %+v", id)
	}
	if id.String() != "spiffe://cluster.local/ns/default/sa/sleep" || id.URL().String() != id.String() {
		t.Errorf("String %q URL %q", id.String(), id.URL())
	}
	for _, bad := range []string{
		"", "http://cluster.local/ns/a/sa/b", "spiffe://cluster.local", "spiffe://cluster.local/ns/a",
		"spiffe://cluster.local/ns/a/sa/b/extra", "spiffe://cluster.local/sa/b/ns/a", "spiffe:///ns/a/sa/b",
		"spiffe://Cluster.Local/ns/a/sa/b", "spiffe://cluster.local/ns/A/sa/b", "spiffe://cluster.local/ns/a.b/sa/c",
		"spiffe://cluster.local/ns/-a/sa/b", "spiffe://cluster.local/ns/a/sa/b%2Fc",
	} {
		if _, err := spiffe.Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
	if _, err := spiffe.Parse("spiffe://cluster.local/ns/a/sa/b.c-d"); err != nil {
		t.Errorf("dotted service account: %v", err)
	}
}

func TestFromURIsAndServiceAccountUser(t *testing.T) {
	u := func(s string) *url.URL { v, _ := url.Parse(s); return v }
	id, err := spiffe.FromURIs([]*url.URL{u("https://example.com"), u("spiffe://td/ns/a/sa/b")})
	if err != nil || id.NamespacedName() != "a/b" {
		t.Errorf("%v %v", id, err)
	}
	if _, err := spiffe.FromURIs(nil); err == nil {
		t.Error("no URIs accepted")
	}
	if _, err := spiffe.FromURIs([]*url.URL{u("spiffe://td/ns/a/sa/b"), u("spiffe://td/ns/c/sa/d")}); err == nil || !strings.Contains(err.Error(), "2 SPIFFE") {
		t.Errorf("two identities: %v", err)
	}
	id, err = spiffe.FromServiceAccountUser("td", "system:serviceaccount:prod:api")
	if err != nil || id.String() != "spiffe://td/ns/prod/sa/api" {
		t.Errorf("%v %v", id, err)
	}
	for _, bad := range []string{"system:node:n1", "system:serviceaccount:prod", "alice", "system:serviceaccount::api"} {
		if _, err := spiffe.FromServiceAccountUser("td", bad); err == nil {
			t.Errorf("FromServiceAccountUser(%q) succeeded", bad)
		}
	}
}
