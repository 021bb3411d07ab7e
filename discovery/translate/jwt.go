package translate

import (
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"

	"github.com/sextant-mesh/sextant/model"
)

// FailedJWKS is the key set inlined when a jwksUri could not be fetched
// (yet): a syntactically valid RSA key nobody holds the private half of,
// so every token of that issuer is refused rather than accepted, as
// istiod does.
const FailedJWKS = `{"keys":[{"kty":"RSA","kid":"sextant-jwks-unavailable","alg":"RS256","use":"sig","e":"AQAB","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"}]}`

// jwtFilter builds jwt_authn from the RequestAuthentications of the root
// namespace and the workload's namespace that select it, as Istio does:
// one provider per jwtRule (origins-N), each verifying with keys inlined
// (a jwksUri's keys as fetched by Sextant, or FailedJWKS), its payload
// published as metadata for AuthorizationPolicy; a request whose token is
// invalid is refused with 401, one without a token passes (an
// AuthorizationPolicy with requestPrincipals then denies it).
func (c *Context) jwtFilter(ns string, labels map[string]string) (*hcmv3.HttpFilter, uint64) {
	h := &model.Hasher{}
	var rules []*security.JWTRule
	var owners []string
	for _, cfg := range c.Snap.Configs(model.KindRequestAuthentication) {
		if cfg.Key.Namespace != ns && cfg.Key.Namespace != c.Mesh.RootNamespace {
			continue
		}
		ra := cfg.Spec.(*security.RequestAuthentication)
		if ra.GetTargetRef() != nil || len(ra.GetTargetRefs()) > 0 {
			continue
		}
		if !model.LabelsMatch(ra.GetSelector().GetMatchLabels(), labels) {
			continue
		}
		h.U64(cfg.Hash)
		for _, r := range ra.GetJwtRules() {
			rules = append(rules, r)
			owners = append(owners, cfg.Key.Namespace+"/"+cfg.Key.Name)
		}
	}
	if len(rules) == 0 {
		return nil, h.Sum()
	}
	cfg := &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{}, BypassCorsPreflight: true}
	var anyOf []*jwtv3.JwtRequirement
	for i, r := range rules {
		name := "origins-" + strconv.Itoa(i)
		jwks := r.GetJwks()
		if jwks == "" {
			if k := c.jwks(r.GetJwksUri()); k != "" {
				jwks = k
			} else {
				c.warnOnce("jwks\x00"+r.GetJwksUri(), &JWTError{RequestAuthentication: owners[i], Msg: "the keys of jwksUri " + strconv.Quote(r.GetJwksUri()) + " are not available (not fetched yet, or the fetch failed); tokens of issuer " + strconv.Quote(r.GetIssuer()) + " are refused"})
				jwks = FailedJWKS
			}
		}
		h.Str(jwks)
		p := &jwtv3.JwtProvider{
			Issuer:    r.GetIssuer(),
			Audiences: r.GetAudiences(),
			JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: jwks},
			}},
			Forward:              r.GetForwardOriginalToken(),
			FromParams:           r.GetFromParams(),
			FromCookies:          r.GetFromCookies(),
			ForwardPayloadHeader: r.GetOutputPayloadToHeader(),
			PayloadInMetadata:    jwtPayloadKey,
		}
		for _, fh := range r.GetFromHeaders() {
			p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: fh.GetName(), ValuePrefix: fh.GetPrefix()})
		}
		for _, ch := range r.GetOutputClaimToHeaders() {
			p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: ch.GetHeader(), ClaimName: ch.GetClaim()})
		}
		cfg.Providers[name] = p
		anyOf = append(anyOf, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}})
	}
	anyOf = append(anyOf, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}})
	cfg.Rules = []*jwtv3.RequirementRule{{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{
			RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: anyOf}},
		}},
	}}
	return httpFilter(JWTAuthnFilter, cfg), h.Sum()
}

// jwks returns the fetched keys of uri in this snapshot ("" if none).
func (c *Context) jwks(uri string) string {
	for _, cfg := range c.Snap.Configs(model.KindJWKS) {
		if cfg.Key.Name == uri {
			if s, ok := cfg.Spec.(*wrapperspb.StringValue); ok {
				return s.GetValue()
			}
		}
	}
	return ""
}

// JWTError is a RequestAuthentication problem met while translating.
type JWTError struct{ RequestAuthentication, Msg string }

func (e *JWTError) Error() string {
	return "RequestAuthentication " + e.RequestAuthentication + ": " + e.Msg
}
