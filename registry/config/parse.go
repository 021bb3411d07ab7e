package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	trafficv1 "github.com/sextant-mesh/sextant/api/traffic/v1alpha1"
	"github.com/sextant-mesh/sextant/model"
)

// Kinds that Parse decodes but that are not model configs: they become
// services and endpoints in Build. The config kinds use model.Kind values.
const (
	KindServiceEntry  = "ServiceEntry"
	KindWorkloadEntry = "WorkloadEntry"
	KindService       = "Service"
	KindEndpointSlice = "EndpointSlice"
)

// DefaultNamespace is the namespace of objects whose metadata names none.
const DefaultNamespace = "default"

// Object is one decoded and individually valid document.
type Object struct {
	APIVersion   string
	Kind         string
	Namespace    string
	Name         string
	Labels       map[string]string
	Annotations  map[string]string
	CreationTime time.Time
	// Location names the input and document, e.g. "mesh.yaml:14 (doc 2)".
	Location string
	// Spec is the decoded body: the istio.io/api message of an Istio kind
	// (*v1alpha3.ServiceEntry, *v1beta1.AuthorizationPolicy, …), or the whole
	// *corev1.Service or *discoveryv1.EndpointSlice. It must not be mutated.
	Spec any
}

// ID returns "Kind namespace/name", the form errors use to name objects.
func (o *Object) ID() string { return objectID(o.Kind, o.Namespace, o.Name) }

func objectID(kind, ns, name string) string {
	if name == "" {
		name = "<unnamed>"
	}
	return kind + " " + ns + "/" + name
}

// Result is the outcome of parsing one input.
type Result struct {
	// Location is the input as the caller named it (typically a file path).
	Location string
	// Objects are the documents that decoded and validated without errors,
	// in input order.
	Objects []*Object
	// Errors holds every problem found, warnings included. Registry is left
	// empty for the caller to fill in.
	Errors []model.ConfigError
}

// Valid reports whether the input has no errors other than warnings. An
// input that is not valid should be rejected as a whole.
func (r *Result) Valid() bool { return !hasErrors(r.Errors) }

func hasErrors(errs []model.ConfigError) bool {
	for _, e := range errs {
		if !e.Warning {
			return true
		}
	}
	return false
}

// document is one YAML or JSON document of an input.
type document struct {
	index int    // 1-based, counting non-empty documents
	line  int    // line of the document's first content line, 0 if unknown
	first int    // line the document's text starts at (for YAML error lines)
	data  []byte // YAML or JSON text
	// jsonElem marks an element of a JSON array, whose text starts at line.
	jsonElem bool
}

// base is the input line of the document text's first line.
func (d document) base() int {
	if d.first == 1 && d.line > 0 && d.jsonElem {
		return d.line
	}
	return d.first
}

func (d document) location(input string) string {
	if d.line == 0 {
		return fmt.Sprintf("%s#%d", input, d.index)
	}
	return fmt.Sprintf("%s:%d (doc %d)", input, d.line, d.index)
}

// Parse decodes and validates every document of one input. data is either
// a JSON object, a JSON array of objects, or YAML documents separated by
// "---" lines. Parse never fails: every problem is reported in the Result.
func Parse(location string, data []byte) *Result {
	res, _ := ParseCached(location, data, nil)
	return res
}

// DocCache holds the objects of an input's valid documents by a hash of
// their text, so parsing a changed input again decodes only the documents
// that changed (a one-line edit in a file of 1,000 services decodes one).
type DocCache map[uint64]*Object

// ParseCached is Parse reusing the objects of documents found in prev (the
// cache of the input's previous parse) and returning this parse's cache.
// With a nil prev it caches nothing and returns nil. Cached objects are
// shared between results; like every Object, they must not be mutated.
func ParseCached(location string, data []byte, prev DocCache) (*Result, DocCache) {
	p := &parser{
		res:  &Result{Location: location},
		seen: map[string]string{},
		prev: prev,
	}
	if prev != nil {
		p.next = DocCache{}
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') && json.Valid(trimmed) {
		p.splitJSON(data)
	} else {
		p.splitYAML(data)
	}
	return p.res, p.next
}

type parser struct {
	res        *Result
	seen       map[string]string // object ID → location, to find duplicates
	prev, next DocCache
}

func (p *parser) report(e model.ConfigError) { p.res.Errors = append(p.res.Errors, e) }

// splitJSON handles a JSON object or an array of objects.
func (p *parser) splitJSON(data []byte) {
	start := bytes.IndexAny(data, "{[")
	if data[start] == '{' {
		p.document(document{index: 1, line: lineAt(data, start), first: 1, data: data})
		return
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // '['; json.Valid made this safe
		p.report(model.ConfigError{Location: p.res.Location, Message: "invalid JSON: " + err.Error()})
		return
	}
	for i := 1; dec.More(); i++ {
		off := int(dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			p.report(model.ConfigError{Location: p.res.Location, Message: "invalid JSON: " + err.Error()})
			return
		}
		// Skip the separator and white space before the element.
		for off < len(data) && strings.IndexByte(", \t\r\n", data[off]) >= 0 {
			off++
		}
		p.document(document{index: i, line: lineAt(data, off), first: 1, data: raw, jsonElem: true})
	}
}

// lineAt returns the 1-based line of byte offset off.
func lineAt(data []byte, off int) int {
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// splitYAML splits YAML text on "---" lines, skipping documents that hold
// only comments and blank lines.
func (p *parser) splitYAML(data []byte) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	index := 0
	first := 1
	var cur []byte
	flush := func() {
		content := firstContentLine(cur)
		if content > 0 {
			index++
			p.document(document{index: index, line: first + content - 1, first: first, data: cur})
		}
		cur = nil
	}
	for i, l := range lines {
		if isSeparator(l) {
			flush()
			first = i + 2
			continue
		}
		cur = append(cur, l...)
	}
	flush()
}

func isSeparator(line []byte) bool {
	line = bytes.TrimRight(line, "\r\n")
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := line[3:]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t'
}

// firstContentLine returns the 1-based line of the first line that is not
// blank or a comment, or 0 if there is none.
func firstContentLine(doc []byte) int {
	for i, l := range bytes.Split(doc, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' {
			return i + 1
		}
	}
	return 0
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError turns a sigs.k8s.io/yaml error into a message and the input
// line it names (0 if none): the line goes into the location, where every
// other error has it, counted from the start of the input rather than of
// the document.
func yamlError(err error, base int) (string, int) {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil {
			line = n + base - 1
			msg = "yaml: " + msg[len(m[0]):]
		}
	}
	return "invalid YAML: " + strings.TrimPrefix(msg, "yaml: "), line
}

// objectErrors collects the errors of one object.
type objectErrors struct {
	loc, obj string
	errs     []model.ConfigError
}

// setObject names the object in errors recorded so far and from now on.
func (o *objectErrors) setObject(id string) {
	o.obj = id
	for i := range o.errs {
		o.errs[i].Object = id
	}
}

func (o *objectErrors) add(field, format string, args ...any) {
	o.errs = append(o.errs, model.ConfigError{
		Location: o.loc, Object: o.obj, Field: field, Message: fmt.Sprintf(format, args...),
	})
}

func (o *objectErrors) warn(field, format string, args ...any) {
	o.errs = append(o.errs, model.ConfigError{
		Location: o.loc, Object: o.obj, Field: field, Message: fmt.Sprintf(format, args...), Warning: true,
	})
}

func (p *parser) document(d document) {
	loc := d.location(p.res.Location)
	// Errors name the field's own line and column, found only when there
	// are errors to place.
	from := len(p.res.Errors)
	defer func() {
		var pos *position
		for i := from; i < len(p.res.Errors); i++ {
			e := &p.res.Errors[i]
			if e.Location != loc || e.Field == "" || d.line == 0 {
				continue
			}
			if pos == nil {
				pos = newPosition(d.data, d.base())
			}
			if line, col := pos.of(e.Field); line > 0 {
				e.Location = fieldLocation(p.res.Location, line, col, d.index)
			}
		}
	}()
	var key uint64
	if p.next != nil {
		key = model.HashBytes(d.data)
		if cached, ok := p.prev[key]; ok {
			obj := *cached
			obj.Location = loc
			p.next[key] = cached
			p.add(&obj, &objectErrors{loc: loc})
			return
		}
	}
	fail := func(msg string) {
		p.report(model.ConfigError{Location: loc, Message: msg})
	}
	js, err := yaml.YAMLToJSON(d.data)
	if err != nil {
		msg, line := yamlError(err, d.base())
		if line > 0 {
			loc = fmt.Sprintf("%s:%d (doc %d)", p.res.Location, line, d.index)
		}
		p.report(model.ConfigError{Location: loc, Message: msg})
		return
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil || top == nil {
		fail("document is not an object with apiVersion, kind and metadata")
		return
	}
	var apiVersion, kind string
	if err := unmarshalString(top["apiVersion"], &apiVersion); err != nil {
		p.report(model.ConfigError{Location: loc, Field: "apiVersion", Message: err.Error()})
		return
	}
	if err := unmarshalString(top["kind"], &kind); err != nil {
		p.report(model.ConfigError{Location: loc, Field: "kind", Message: err.Error()})
		return
	}
	if apiVersion == "" || kind == "" {
		fail("apiVersion and kind are required")
		return
	}
	group, _, _ := strings.Cut(apiVersion, "/")
	if !strings.Contains(apiVersion, "/") {
		group = ""
	}
	var obj *Object
	oe := &objectErrors{loc: loc}
	// Name the object in errors even if its metadata fails to decode.
	var named struct {
		Metadata struct{ Name, Namespace string }
	}
	_ = json.Unmarshal(js, &named)
	if named.Metadata.Namespace == "" {
		named.Metadata.Namespace = DefaultNamespace
	}
	oe.setObject(objectID(kind, named.Metadata.Namespace, named.Metadata.Name))
	switch {
	case group == "networking.istio.io" && isVersion(apiVersion, "v1", "v1beta1", "v1alpha3"),
		group == "security.istio.io" && isVersion(apiVersion, "v1", "v1beta1"),
		group == "telemetry.istio.io" && isVersion(apiVersion, "v1", "v1alpha1"):
		spec := newIstioSpec(group, kind)
		if spec == nil {
			p.unknownKind(loc, apiVersion, kind)
			return
		}
		obj = decodeIstio(oe, top, apiVersion, kind, spec)
	case apiVersion == trafficv1.APIVersion && kind == trafficv1.Kind:
		obj = decodeTrafficState(oe, top, apiVersion, kind)
	case apiVersion == "v1" && kind == KindService:
		obj = decodeKube(oe, js, apiVersion, kind, &corev1.Service{})
	case apiVersion == "discovery.k8s.io/v1" && kind == KindEndpointSlice:
		obj = decodeKube(oe, js, apiVersion, kind, &discoveryv1.EndpointSlice{})
	default:
		p.unknownKind(loc, apiVersion, kind)
		return
	}
	if obj != nil {
		obj.Location = loc
		validateObject(oe, obj)
		if p.next != nil && len(oe.errs) == 0 {
			p.next[key] = obj
		}
		p.add(obj, oe)
		return
	}
	p.res.Errors = append(p.res.Errors, oe.errs...)
}

// add records a decoded document: its object unless it has errors or
// duplicates an earlier one, and its errors.
func (p *parser) add(obj *Object, oe *objectErrors) {
	if !hasErrors(oe.errs) {
		if prev, dup := p.seen[obj.ID()]; dup {
			oe.setObject(obj.ID())
			oe.add("metadata.name", "duplicate object: also defined at %s", prev)
		} else {
			p.seen[obj.ID()] = obj.Location
			p.res.Objects = append(p.res.Objects, obj)
		}
	}
	p.res.Errors = append(p.res.Errors, oe.errs...)
}

func (p *parser) unknownKind(loc, apiVersion, kind string) {
	p.report(model.ConfigError{
		Location: loc,
		Message:  fmt.Sprintf("unknown kind %s (apiVersion %s), ignored", kind, apiVersion),
		Warning:  true,
	})
}

func isVersion(apiVersion string, versions ...string) bool {
	_, v, _ := strings.Cut(apiVersion, "/")
	for _, want := range versions {
		if v == want {
			return true
		}
	}
	return false
}

func unmarshalString(raw json.RawMessage, s *string) error {
	if raw == nil {
		return nil
	}
	if err := json.Unmarshal(raw, s); err != nil {
		return errors.New("must be a string")
	}
	return nil
}

// newIstioSpec returns an empty spec message for a supported Istio kind.
func newIstioSpec(group, kind string) proto.Message {
	if group == "networking.istio.io" {
		switch kind {
		case KindServiceEntry:
			return &networking.ServiceEntry{}
		case KindWorkloadEntry:
			return &networking.WorkloadEntry{}
		case string(model.KindDestinationRule):
			return &networking.DestinationRule{}
		case string(model.KindVirtualService):
			return &networking.VirtualService{}
		case string(model.KindSidecar):
			return &networking.Sidecar{}
		}
		return nil
	}
	if group == "telemetry.istio.io" {
		if kind == string(model.KindTelemetry) {
			return &telemetry.Telemetry{}
		}
		return nil
	}
	switch kind {
	case string(model.KindPeerAuthentication):
		return &security.PeerAuthentication{}
	case string(model.KindAuthorizationPolicy):
		return &security.AuthorizationPolicy{}
	case string(model.KindRequestAuthentication):
		return &security.RequestAuthentication{}
	}
	return nil
}

// decodeIstio decodes the metadata and spec of an Istio resource.
func decodeIstio(oe *objectErrors, top map[string]json.RawMessage, apiVersion, kind string, spec proto.Message) *Object {
	var meta metav1.ObjectMeta
	metaOK := decodeStrict(top["metadata"], &meta, "metadata", func(field, msg string) { oe.add(field, "%s", msg) })
	obj := newObject(apiVersion, kind, &meta, spec)
	if metaOK {
		oe.setObject(obj.ID())
	}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		switch k {
		case "apiVersion", "kind", "metadata", "spec", "status":
		default:
			oe.add(k, "unknown field %q", k)
		}
	}
	if raw := top["spec"]; raw != nil && string(raw) != "null" {
		var generic any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&generic); err != nil {
			oe.add("spec", "invalid JSON: %v", err)
		} else if field, why := protoProblem(spec.ProtoReflect().Descriptor(), generic, "spec"); field != "" {
			oe.add(field, "%s", why)
		} else if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(raw, spec); err != nil {
			oe.add("spec", "%s", cleanProtoError(err))
		}
	}
	if !metaOK || hasErrors(oe.errs) {
		return nil
	}
	return obj
}

// decodeTrafficState decodes Sextant's TrafficState kind strictly.
func decodeTrafficState(oe *objectErrors, top map[string]json.RawMessage, apiVersion, kind string) *Object {
	var meta metav1.ObjectMeta
	metaOK := decodeStrict(top["metadata"], &meta, "metadata", func(field, msg string) { oe.add(field, "%s", msg) })
	spec := &trafficv1.TrafficStateSpec{}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		switch k {
		case "apiVersion", "kind", "metadata", "spec":
		default:
			oe.add(k, "unknown field %q", k)
		}
	}
	specOK := decodeStrict(top["spec"], spec, "spec", func(field, msg string) { oe.add(field, "%s", msg) })
	if !metaOK || !specOK || hasErrors(oe.errs) {
		return nil
	}
	obj := newObject(apiVersion, kind, &meta, spec)
	oe.setObject(obj.ID())
	return obj
}

// decodeKube strictly decodes a whole Kubernetes object into out.
func decodeKube(oe *objectErrors, js []byte, apiVersion, kind string, out metav1.Object) *Object {
	if !decodeStrict(js, out, "", func(field, msg string) { oe.add(field, "%s", msg) }) {
		return nil
	}
	meta := &metav1.ObjectMeta{
		Name: out.GetName(), Namespace: out.GetNamespace(), Labels: out.GetLabels(),
		Annotations: out.GetAnnotations(), CreationTimestamp: out.GetCreationTimestamp(),
	}
	obj := newObject(apiVersion, kind, meta, out)
	oe.setObject(obj.ID())
	// Keep the decoded object consistent with the defaulted namespace.
	out.SetNamespace(obj.Namespace)
	return obj
}

func newObject(apiVersion, kind string, meta *metav1.ObjectMeta, spec any) *Object {
	ns := meta.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	return &Object{
		APIVersion:   apiVersion,
		Kind:         kind,
		Namespace:    ns,
		Name:         meta.Name,
		Labels:       meta.Labels,
		Annotations:  meta.Annotations,
		CreationTime: meta.CreationTimestamp.Time,
		Spec:         spec,
	}
}

// decodeStrict decodes JSON into out, rejecting fields out's type does not
// have (case-sensitively, as Kubernetes does). Problems are passed to report
// with a field path prefixed by prefix.
func decodeStrict(raw json.RawMessage, out any, prefix string, report func(field, msg string)) bool {
	if raw == nil || string(raw) == "null" {
		return true
	}
	var generic any
	gdec := json.NewDecoder(bytes.NewReader(raw))
	gdec.UseNumber()
	if err := gdec.Decode(&generic); err != nil {
		report(prefix, "invalid JSON: "+err.Error())
		return false
	}
	if field, why := jsonProblem(reflect.TypeOf(out), generic, prefix); why != "" {
		report(field, why)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		field := prefix
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			field = joinPath(prefix, te.Field)
			report(field, fmt.Sprintf("cannot use a JSON %s as %s", te.Value, te.Type))
			return false
		}
		report(field, strings.TrimPrefix(err.Error(), "json: "))
		return false
	}
	return true
}

func joinPath(prefix, field string) string {
	if prefix == "" {
		return field
	}
	if field == "" {
		return prefix
	}
	return prefix + "." + field
}

// protojson randomly uses "proto: " or "proto:\u00a0" as its prefix and adds
// the JSON position, which means nothing to someone editing YAML.
var protoErrorPrefixRE = regexp.MustCompile(`^proto:\s*(\(line \d+:\d+\):\s*)?`)

func cleanProtoError(err error) string {
	return protoErrorPrefixRE.ReplaceAllString(err.Error(), "")
}
