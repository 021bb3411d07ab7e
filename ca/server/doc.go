// Package server serves Istio's CA API, istio.v1.auth.IstioCertificateService
// CreateCertificate, as istiod does (security/pkg/server/ca/server.go):
//
//  1. count the request (citadel_server_csr_count);
//  2. authenticate with an authn.Chain; failure is Unauthenticated;
//  3. the identity is the caller's, never the CSR's SANs; asking for another
//     one (ImpersonatedIdentity metadata) is PermissionDenied unless an
//     Impersonation policy allows it (the seam for ztunnel's node
//     authorizer);
//  4. rate-limit per identity (ResourceExhausted);
//  5. sign: a malformed CSR, a weak key or a TTL above the maximum is
//     InvalidArgument.
//
// The response chain is leaf, intermediates, root bundle (last). Metrics use
// Citadel's names and go to the registry given in Options.
package server
