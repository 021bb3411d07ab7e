package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// The decoders (protojson, encoding/json) name an unknown or mistyped field
// but not where it is. These walkers find the first problem in decoded JSON
// (numbers kept as json.Number) and return its path, such as
// "spec.http[0].route[1].wieght", and a reason. They return an empty path
// when they find nothing, in which case the decoder's own error is used.

// protoProblem checks v against message md the way protojson reads it: keys
// are JSON or proto field names, null means unset.
func protoProblem(md protoreflect.MessageDescriptor, v any, path string) (string, string) {
	if md.FullName() == "google.protobuf.Duration" {
		return durationProblem(v, path)
	}
	if md.FullName().Parent() == "google.protobuf" {
		return "", "" // other well-known types have their own JSON forms
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return path, "must be an object, not " + jsonType(v)
	}
	fields := md.Fields()
	oneofs := map[protoreflect.FullName]string{} // oneof → the key that set it
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		fd := fields.ByJSONName(k)
		if fd == nil {
			fd = fields.ByTextName(k)
		}
		p := joinPath(path, k)
		if fd == nil {
			return p, fmt.Sprintf("unknown field %q", k)
		}
		val := obj[k]
		if val == nil {
			continue
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if other, dup := oneofs[od.FullName()]; dup {
				return path, fmt.Sprintf("only one of %q and %q may be set", other, k)
			}
			oneofs[od.FullName()] = k
		}
		switch {
		case fd.IsMap():
			m, ok := val.(map[string]any)
			if !ok {
				return p, "must be a map, not " + jsonType(val)
			}
			for _, mk := range slices.Sorted(maps.Keys(m)) {
				ep := p + "[" + strconv.Quote(mk) + "]"
				if isIntKind(fd.MapKey().Kind()) {
					if _, err := strconv.ParseInt(mk, 10, 64); err != nil {
						return ep, fmt.Sprintf("map key %q must be a number", mk)
					}
				}
				if fp, why := valueProblem(fd.MapValue(), m[mk], ep); fp != "" {
					return fp, why
				}
			}
		case fd.IsList():
			l, ok := val.([]any)
			if !ok {
				return p, "must be a list, not " + jsonType(val)
			}
			for i, e := range l {
				if fp, why := valueProblem(fd, e, fmt.Sprintf("%s[%d]", p, i)); fp != "" {
					return fp, why
				}
			}
		default:
			if fp, why := valueProblem(fd, val, p); fp != "" {
				return fp, why
			}
		}
	}
	return "", ""
}

// durationProblem checks the JSON form of a google.protobuf.Duration:
// seconds with an "s" suffix, such as "1.5s".
func durationProblem(v any, path string) (string, string) {
	s, ok := v.(string)
	if !ok {
		return path, "must be a duration string such as \"1.5s\", not " + jsonType(v)
	}
	if num, found := strings.CutSuffix(s, "s"); found {
		if _, err := strconv.ParseFloat(num, 64); err == nil && !strings.ContainsAny(num, "eEinIN") {
			return "", ""
		}
	}
	return path, fmt.Sprintf("invalid duration %q: use seconds with an \"s\" suffix, such as \"1.5s\"", s)
}

// valueProblem checks a single (non-list, non-map) value of field fd.
func valueProblem(fd protoreflect.FieldDescriptor, v any, path string) (string, string) {
	switch k := fd.Kind(); {
	case k == protoreflect.MessageKind || k == protoreflect.GroupKind:
		return protoProblem(fd.Message(), v, path)
	case k == protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return "", ""
		}
		switch x := v.(type) {
		case string:
			if fd.Enum().Values().ByName(protoreflect.Name(x)) == nil {
				return path, fmt.Sprintf("invalid value %q, must be one of %s", x, enumNames(fd.Enum()))
			}
		case json.Number:
		default:
			return path, "must be a string, not " + jsonType(v)
		}
	case k == protoreflect.StringKind || k == protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			return path, "must be a string, not " + jsonType(v)
		}
	case k == protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			return path, "must be a boolean, not " + jsonType(v)
		}
	case isIntKind(k):
		s, ok := numberText(v)
		if !ok {
			return path, "must be a number, not " + jsonType(v)
		}
		if isUnsignedKind(k) && strings.HasPrefix(s, "-") {
			return path, fmt.Sprintf("must not be negative, got %s", s)
		}
	case k == protoreflect.FloatKind || k == protoreflect.DoubleKind:
		if _, ok := numberText(v); !ok {
			return path, "must be a number, not " + jsonType(v)
		}
	}
	return "", ""
}

func numberText(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), true
	case string: // protojson accepts quoted numbers
		return x, true
	}
	return "", false
}

func isIntKind(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return true
	}
	return isUnsignedKind(k)
}

func isUnsignedKind(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return true
	}
	return false
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	vals := ed.Values()
	names := make([]string, 0, vals.Len())
	for i := 0; i < vals.Len(); i++ {
		names = append(names, string(vals.Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

var jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// jsonProblem finds the first key of v that t (a Go type with json tags)
// has no field for, or the first scalar of the wrong JSON type. Types with
// their own UnmarshalJSON are not inspected.
func jsonProblem(t reflect.Type, v any, path string) (string, string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil || reflect.PointerTo(t).Implements(jsonUnmarshalerType) {
		return "", ""
	}
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); !ok {
			return path, "must be a string, not " + jsonType(v)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return path, "must be a boolean, not " + jsonType(v)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if _, ok := v.(json.Number); !ok {
			return path, "must be a number, not " + jsonType(v)
		}
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return "", "" // the decoder reports type mismatches
		}
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			p := joinPath(path, k)
			ft, ok := fields[k]
			if !ok {
				return p, fmt.Sprintf("unknown field %q", k)
			}
			if fp, why := jsonProblem(ft, obj[k], p); why != "" {
				return fp, why
			}
		}
	case reflect.Slice, reflect.Array:
		l, ok := v.([]any)
		if !ok {
			return "", ""
		}
		for i, e := range l {
			if fp, why := jsonProblem(t.Elem(), e, fmt.Sprintf("%s[%d]", path, i)); why != "" {
				return fp, why
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return "", ""
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if fp, why := jsonProblem(t.Elem(), m[k], path+"["+strconv.Quote(k)+"]"); why != "" {
				return fp, why
			}
		}
	}
	return "", ""
}

// jsonFields maps the JSON names of a struct's fields to their types,
// flattening embedded and ",inline" structs.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ((f.Anonymous && name == "") || strings.Contains(","+opts+",", ",inline,")) {
			for k, v := range jsonFields(ft) {
				if _, ok := out[k]; !ok {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
