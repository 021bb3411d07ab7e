package config

import (
	"fmt"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/sextant-mesh/sextant/model"
)

// setError is a problem found across inputs, with the input it belongs to.
type setError struct {
	input string
	err   model.ConfigError
}

// source is an object together with the input it came from.
type source struct {
	obj   *Object
	input string
}

// collect gathers the objects of all results, resolving duplicates (same
// kind, namespace and name in several inputs) as Istio resolves conflicts:
// the oldest wins, then the first in input order. The losers are reported.
func collect(results []*Result) ([]source, []setError) {
	var all []source
	for _, r := range results {
		for _, o := range r.Objects {
			all = append(all, source{obj: o, input: r.Location})
		}
	}
	winner := map[string]int{} // ID → index into all
	for i, s := range all {
		id := s.obj.ID()
		w, ok := winner[id]
		if !ok || s.obj.CreationTime.Before(all[w].obj.CreationTime) {
			winner[id] = i
		}
	}
	var out []source
	var errs []setError
	for i, s := range all {
		w := winner[s.obj.ID()]
		if w == i {
			out = append(out, s)
			continue
		}
		errs = append(errs, setError{input: s.input, err: model.ConfigError{
			Location: s.obj.Location, Object: s.obj.ID(), Field: "metadata.name",
			Message: fmt.Sprintf("duplicate object: also defined at %s, which wins; ignored", all[w].obj.Location),
		}})
	}
	return out, errs
}

// ValidateSet checks what no single input can: duplicate objects across
// inputs and EndpointSlices whose Service is missing (a warning). Parse has
// already validated each object on its own. References between routing
// config and services (istioctl analyze's IST0101 and IST0127) are checked
// on the merged model.Snapshot, where every registry's services are.
func ValidateSet(results []*Result) []model.ConfigError {
	objs, errs := collect(results)
	errs = append(errs, checkReferences(objs)...)
	return flatten(errs)
}

func flatten(errs []setError) []model.ConfigError {
	if len(errs) == 0 {
		return nil
	}
	out := make([]model.ConfigError, len(errs))
	for i, e := range errs {
		out[i] = e.err
	}
	return out
}

// checkReferences finds EndpointSlices whose Service is missing. References
// that may be satisfied by another registry (VirtualService hosts,
// destinations and subsets) are checked on the merged snapshot instead.
func checkReferences(objs []source) []setError {
	kubeServices := map[model.ServiceKey]bool{}
	for _, s := range objs {
		if s.obj.Kind == KindService {
			kubeServices[kubeServiceKey(s.obj.Namespace, s.obj.Name)] = true
		}
	}
	var errs []setError
	for _, s := range objs {
		spec, ok := s.obj.Spec.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		name := spec.Labels[ServiceNameLabel]
		if spec.AddressType != discoveryv1.AddressTypeFQDN && !kubeServices[kubeServiceKey(s.obj.Namespace, name)] {
			errs = append(errs, setError{input: s.input, err: model.ConfigError{
				Location: s.obj.Location, Object: s.obj.ID(), Field: key("metadata.labels", ServiceNameLabel),
				Message: fmt.Sprintf("Service %s/%s is not defined; the endpoints are ignored", s.obj.Namespace, name),
				Warning: true,
			}})
		}
	}
	return errs
}

func kubeServiceKey(ns, name string) model.ServiceKey {
	return model.ServiceKey{Namespace: ns, Hostname: name + "." + ns + ".svc." + model.DefaultDomainSuffix}
}
