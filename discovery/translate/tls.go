package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/sextant-mesh/sextant/discovery/proxy"
)

// upstreamTLS is the client TLS context of DestinationRule modes SIMPLE and
// MUTUAL (files on the proxy's filesystem, as Istio does), or nil.
// ISTIO_MUTUAL is handled with the workload certificates (mtls.go).
func upstreamTLS(gen proxy.Generator, s *networking.ClientTLSSettings) *tlsv3.UpstreamTlsContext {
	if s == nil || gen != proxy.GenEnvoy {
		return nil
	}
	switch s.GetMode() {
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
	default:
		return nil
	}
	ctx := &tlsv3.UpstreamTlsContext{Sni: s.GetSni(), CommonTlsContext: &tlsv3.CommonTlsContext{}}
	if !s.GetInsecureSkipVerify().GetValue() {
		vc := &tlsv3.CertificateValidationContext{}
		if ca := s.GetCaCertificates(); ca != "" {
			vc.TrustedCa = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: ca}}
		}
		for _, san := range s.GetSubjectAltNames() {
			vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
				SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san}},
			})
		}
		if vc.TrustedCa != nil || len(vc.MatchTypedSubjectAltNames) > 0 {
			ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
		}
	}
	if s.GetMode() == networking.ClientTLSSettings_MUTUAL && s.GetClientCertificate() != "" {
		ctx.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: s.GetClientCertificate()}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: s.GetPrivateKey()}},
		}}
	}
	return ctx
}
