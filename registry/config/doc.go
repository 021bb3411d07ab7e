// Package config turns mesh configuration documents (Istio networking and
// security resources, Kubernetes Services and EndpointSlices, as YAML or
// JSON) into validated objects and then into model services, endpoints and
// configs.
//
// It is pure: it performs no I/O and keeps no state, so the file registry,
// the etcd registry, `sextantctl analyze` and the validating webhook all share
// the same parsing, validation and conversion rules.
//
// The three steps are:
//
//   - Parse decodes one input (a file, a key, an admission request) and
//     validates every object in it on its own.
//   - ValidateSet checks what spans a whole set of inputs (duplicates,
//     EndpointSlices without their Service). References from routing config
//     to services, subsets and endpoints are checked on the merged snapshot
//     (model), since another registry may define what is referenced.
//   - Build converts the valid objects of a set into model objects; it runs
//     ValidateSet itself.
package config
