package spiffe

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Scheme is the URI scheme of SPIFFE IDs.
const Scheme = "spiffe"

// ID is a workload identity: a Kubernetes service account in a trust domain.
// The zero value is not a valid identity.
type ID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// New returns the identity of service account sa in namespace ns, checking
// each part.
func New(trustDomain, ns, sa string) (ID, error) {
	id := ID{TrustDomain: trustDomain, Namespace: ns, ServiceAccount: sa}
	return id, id.Validate()
}

// Validate checks the trust domain (SPIFFE: lowercase letters, digits, '.',
// '-', '_'), the namespace (a DNS-1123 label) and the service account (a
// DNS-1123 subdomain), as Kubernetes names them.
func (id ID) Validate() error {
	if err := ValidateTrustDomain(id.TrustDomain); err != nil {
		return err
	}
	if err := checkName("namespace", id.Namespace, 63, false); err != nil {
		return err
	}
	return checkName("service account", id.ServiceAccount, 253, true)
}

// ValidateTrustDomain checks a SPIFFE trust domain name.
func ValidateTrustDomain(td string) error {
	if td == "" {
		return errors.New("trust domain is empty")
	}
	if len(td) > 255 {
		return fmt.Errorf("trust domain %.20q…: longer than 255 characters", td)
	}
	for _, c := range td {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: character %q not allowed (lowercase letters, digits, '.', '-', '_')", td, c)
		}
	}
	return nil
}

func checkName(what, s string, maxLen int, dots bool) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > maxLen {
		return fmt.Errorf("%s %.20q…: longer than %d characters", what, s, maxLen)
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || dots && c == '.'
		if !ok {
			return fmt.Errorf("%s %q: character %q not allowed (lowercase DNS name)", what, s, c)
		}
		if (i == 0 || i == len(s)-1) && (c == '-' || c == '.') {
			return fmt.Errorf("%s %q: must start and end with a letter or digit", what, s)
		}
	}
	return nil
}

// String is the SPIFFE URI, spiffe://<td>/ns/<ns>/sa/<sa>.
func (id ID) String() string {
	return Scheme + "://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL is the SPIFFE URI as a URL, for certificate SANs.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: Scheme, Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// NamespacedName is "<ns>/<sa>", handy for logs and rate-limit keys.
func (id ID) NamespacedName() string { return id.Namespace + "/" + id.ServiceAccount }

// Parse parses spiffe://<td>/ns/<ns>/sa/<sa>.
func Parse(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, Scheme+"://")
	if !ok {
		return ID{}, fmt.Errorf("%q is not a SPIFFE ID: want prefix spiffe://", s)
	}
	td, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ID{}, fmt.Errorf("SPIFFE ID %q: no path; want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>", s)
	}
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return ID{}, fmt.Errorf("SPIFFE ID %q: path /%s is not /ns/<namespace>/sa/<service-account>", s, path)
	}
	id := ID{TrustDomain: td, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	return id, nil
}

// FromURIs returns the single SPIFFE identity among a certificate's URI
// SANs. Other URIs are ignored; zero or several SPIFFE URIs are an error.
func FromURIs(uris []*url.URL) (ID, error) {
	var found []ID
	for _, u := range uris {
		if u.Scheme != Scheme {
			continue
		}
		id, err := Parse(u.String())
		if err != nil {
			return ID{}, err
		}
		found = append(found, id)
	}
	switch len(found) {
	case 0:
		return ID{}, errors.New("no SPIFFE URI SAN")
	case 1:
		return found[0], nil
	default:
		return ID{}, fmt.Errorf("%d SPIFFE URI SANs, want one", len(found))
	}
}

// FromCertificate is FromURIs on a certificate's SANs.
func FromCertificate(c *x509.Certificate) (ID, error) {
	id, err := FromURIs(c.URIs)
	if err != nil {
		return ID{}, fmt.Errorf("certificate %q (serial %s): %w", c.Subject.String(), c.SerialNumber.Text(16), err)
	}
	return id, nil
}

// ServiceAccountUserPrefix starts the Kubernetes user name of a service
// account: system:serviceaccount:<namespace>:<name>.
const ServiceAccountUserPrefix = "system:serviceaccount:"

// FromServiceAccountUser maps the Kubernetes user name
// system:serviceaccount:<ns>:<sa> (a token's "sub", or a TokenReview's
// user) to an identity in trustDomain.
func FromServiceAccountUser(trustDomain, user string) (ID, error) {
	rest, ok := strings.CutPrefix(user, ServiceAccountUserPrefix)
	if !ok {
		return ID{}, fmt.Errorf("subject %q is not a service account (want %s<namespace>:<name>)", user, ServiceAccountUserPrefix)
	}
	ns, sa, ok := strings.Cut(rest, ":")
	if !ok {
		return ID{}, fmt.Errorf("subject %q is not a service account (want %s<namespace>:<name>)", user, ServiceAccountUserPrefix)
	}
	id, err := New(trustDomain, ns, sa)
	if err != nil {
		return ID{}, fmt.Errorf("subject %q: %w", user, err)
	}
	return id, nil
}
