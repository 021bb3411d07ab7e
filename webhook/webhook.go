// Package webhook is Sextant's validating admission webhook: Kubernetes
// sends it every Istio or Kubernetes object it is configured for, before the
// object is stored, and it answers with the same verdict the file registry
// and `sextantctl analyze` give, because it runs the same code
// (registry/config.Parse).
//
// Handler decides AdmissionReviews; Listen serves it over HTTPS on Istio's
// path, /validate (and /validate/), so an existing
// ValidatingWebhookConfiguration for istiod works unchanged. The serving
// certificate comes from a callback (the CA) or from PEM files that are
// re-read when they change (LoadCertFiles).
package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/config"
)

// Path is the URL path Istio's ValidatingWebhookConfiguration calls.
const Path = "/validate"

// DefaultMaxBodyBytes bounds an AdmissionReview. An object is at most about
// 1.5 MiB (etcd's limit); an UPDATE carries it twice.
const DefaultMaxBodyBytes = 4 << 20

// The AdmissionReview versions served. v1beta1 has the same JSON shape; a
// response must carry the request's version.
const (
	reviewV1      = "admission.k8s.io/v1"
	reviewV1beta1 = "admission.k8s.io/v1beta1"
)

// Reasons of galley_validation_failed, after Istio's where they match.
const (
	reasonInvalid     = "invalid_resource"
	reasonDecodeError = "decode_error"
	reasonBadReview   = "malformed_review"
)

// Options configure a Handler.
type Options struct {
	// Registry receives the webhook's metrics. Required.
	Registry *prometheus.Registry
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes defaults to DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// Handler validates AdmissionReviews. It is safe for concurrent use.
type Handler struct {
	log     *slog.Logger
	maxBody int64
	passed  *prometheus.CounterVec
	failed  *prometheus.CounterVec
}

// New returns a Handler whose metrics are registered on o.Registry. It
// fails if they are already registered there.
func New(o Options) (*Handler, error) {
	if o.Registry == nil {
		return nil, errors.New("webhook: a metrics registry is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	h := &Handler{
		log:     o.Logger.With("component", "webhook"),
		maxBody: o.MaxBodyBytes,
		passed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "galley_validation_passed",
			Help: "Objects the validating webhook admitted, by kind (objects of kinds Sextant does not know are not counted).",
		}, []string{"kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "galley_validation_failed",
			Help: "Admission requests the validating webhook denied or could not read, by kind and reason (invalid_resource, decode_error, malformed_review).",
		}, []string{"kind", "reason"}),
	}
	for _, c := range []prometheus.Collector{h.passed, h.failed} {
		if err := o.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("webhook: register metrics: %w", err)
		}
	}
	return h, nil
}

// ServeHTTP answers one AdmissionReview. A request that is not a readable
// AdmissionReview gets an HTTP error (400, 405, 413 or 415); anything else
// gets 200 with the review's response.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			h.badRequest(w, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported content type %q: want application/json", ct))
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.badRequest(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("AdmissionReview larger than %d bytes", tooBig.Limit))
			return
		}
		h.badRequest(w, http.StatusBadRequest, fmt.Sprintf("reading the request body: %v", err))
		return
	}
	review, err := decodeReview(body)
	if err != nil {
		h.badRequest(w, http.StatusBadRequest, err.Error())
		return
	}
	resp := h.review(review.Request)
	resp.UID = review.Request.UID
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	b, err := json.Marshal(&out)
	if err != nil {
		// Only strings and plain structs: cannot happen.
		http.Error(w, "encoding the response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (h *Handler) badRequest(w http.ResponseWriter, code int, msg string) {
	h.failed.WithLabelValues("", reasonBadReview).Inc()
	h.log.Warn("malformed admission request", "status", code, "error", msg)
	http.Error(w, msg, code)
}

// decodeReview reads an AdmissionReview and checks what a response needs.
func decodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errors.New("empty body: want an AdmissionReview")
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("decoding the AdmissionReview: %w", err)
	}
	switch review.APIVersion {
	case reviewV1, reviewV1beta1:
	case "":
		// Kubernetes always sends it; default like its own decoder would.
		review.APIVersion = reviewV1
	default:
		return nil, fmt.Errorf("unsupported AdmissionReview apiVersion %q: want %s", review.APIVersion, reviewV1)
	}
	if review.Kind != "" && review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("kind is %q, want AdmissionReview", review.Kind)
	}
	review.Kind = "AdmissionReview"
	if review.Request == nil {
		return nil, errors.New("the AdmissionReview has no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("the AdmissionReview request has no uid")
	}
	return &review, nil
}

// review decides one admission request.
func (h *Handler) review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Operation == admissionv1.Delete || req.Operation == admissionv1.Connect {
		// Nothing to validate. Any other operation (CREATE, UPDATE, or one
		// this code does not know) has its object validated.
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	loc := fmt.Sprintf("admission %s %s/%s", req.Kind.Kind, req.Namespace, req.Name)
	obj, err := objectJSON(req)
	if err != nil {
		h.failed.WithLabelValues("", reasonDecodeError).Inc()
		h.log.Info("denied: unreadable object", "location", loc, "error", err)
		return deny(req, err.Error(), nil)
	}
	res := config.Parse(loc, obj)
	kind := validatedKind(res)
	if kind == "" {
		// Not a kind Sextant reads: not ours to judge. Any document-level
		// problem would also have been caught by the API server.
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	var errs, warnings []model.ConfigError
	for _, e := range res.Errors {
		if e.Warning {
			warnings = append(warnings, e)
		} else {
			errs = append(errs, e)
		}
	}
	resp := &admissionv1.AdmissionResponse{Allowed: len(errs) == 0}
	for _, e := range warnings {
		resp.Warnings = append(resp.Warnings, fieldMessage(e))
	}
	if resp.Allowed {
		h.passed.WithLabelValues(kind).Inc()
		return resp
	}
	h.failed.WithLabelValues(kind, reasonInvalid).Inc()
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = fieldMessage(e)
	}
	h.log.Info("denied: invalid config", "location", loc, "errors", strings.Join(msgs, "; "))
	denied := deny(req, "configuration is invalid: "+strings.Join(msgs, "; "), errs)
	denied.Warnings = resp.Warnings
	return denied
}

// objectJSON returns the object of a CREATE or UPDATE as a JSON object,
// with the request's namespace filled in when the object names none (as the
// API server stores it).
func objectJSON(req *admissionv1.AdmissionRequest) ([]byte, error) {
	raw := bytes.TrimSpace(req.Object.Raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, fmt.Errorf("request.object is empty: nothing to validate for operation %q", req.Operation)
	}
	if raw[0] != '{' {
		return nil, errors.New("request.object is not a JSON object")
	}
	if req.Namespace == "" {
		return raw, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("request.object: %w", err)
	}
	var meta map[string]json.RawMessage
	if m := top["metadata"]; len(m) > 0 && json.Unmarshal(m, &meta) != nil {
		return raw, nil // not an object: let Parse report it
	}
	if ns, ok := meta["namespace"]; ok && string(ns) != `""` && string(ns) != "null" {
		return raw, nil
	}
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	var err error
	if meta["namespace"], err = json.Marshal(req.Namespace); err != nil {
		return nil, fmt.Errorf("request.namespace: %w", err)
	}
	if top["metadata"], err = json.Marshal(meta); err != nil {
		return nil, fmt.Errorf("request.object metadata: %w", err)
	}
	out, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("request.object: %w", err)
	}
	return out, nil
}

// validatedKind returns the kind of the object Parse validated, or "" when
// Parse did not recognize it (unknown kinds are reported only as warnings
// without an object). Errors name their object only for known kinds, so the
// result is one of the few kinds Sextant reads.
func validatedKind(res *config.Result) string {
	if len(res.Objects) > 0 {
		return res.Objects[0].Kind
	}
	for _, e := range res.Errors {
		if kind, _, ok := strings.Cut(e.Object, " "); ok && kind != "" {
			return kind
		}
	}
	if !res.Valid() {
		// A document Parse could not read at all (no kind, not an object).
		return "unknown"
	}
	return ""
}

// fieldMessage formats an error as "field: message". The location and
// object are those of the admitted object, so they are left out.
func fieldMessage(e model.ConfigError) string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// deny answers 422 Invalid, as the API server's own validation does, with
// one cause per error so clients can show each field.
func deny(req *admissionv1.AdmissionRequest, msg string, errs []model.ConfigError) *admissionv1.AdmissionResponse {
	st := &metav1.Status{
		Status:  metav1.StatusFailure,
		Message: msg,
		Reason:  metav1.StatusReasonInvalid,
		Code:    http.StatusUnprocessableEntity,
		Details: &metav1.StatusDetails{Name: req.Name, Group: req.Kind.Group, Kind: req.Kind.Kind},
	}
	if len(errs) > 0 {
		for _, e := range errs {
			st.Details.Causes = append(st.Details.Causes, metav1.StatusCause{
				Type:    metav1.CauseTypeFieldValueInvalid,
				Message: e.Message,
				Field:   e.Field,
			})
		}
	}
	return &admissionv1.AdmissionResponse{Allowed: false, Result: st}
}
