package config

import (
	"fmt"
	"sort"

	networking "istio.io/api/networking/v1alpha3"
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
// inputs, VirtualService subsets that no DestinationRule defines (a warning,
// as Istio's analyzer IST0101), and EndpointSlices whose Service is missing
// (a warning). Parse has already validated each object on its own.
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

// drSubsets is what the subset check needs from a DestinationRule.
type drSubsets struct {
	host    string // fully qualified, may be a wildcard
	id      string
	subsets map[string]bool
}

func checkReferences(objs []source) []setError {
	var drs []drSubsets
	kubeServices := map[model.ServiceKey]bool{}
	for _, s := range objs {
		switch spec := s.obj.Spec.(type) {
		case *networking.DestinationRule:
			d := drSubsets{
				host:    model.ResolveHost(spec.GetHost(), s.obj.Namespace),
				id:      s.obj.ID(),
				subsets: map[string]bool{},
			}
			for _, ss := range spec.GetSubsets() {
				d.subsets[ss.GetName()] = true
			}
			drs = append(drs, d)
		}
		if s.obj.Kind == KindService {
			kubeServices[kubeServiceKey(s.obj.Namespace, s.obj.Name)] = true
		}
	}
	// Most specific host first, so messages name the closest rule.
	sort.SliceStable(drs, func(i, j int) bool { return len(drs[i].host) > len(drs[j].host) })

	var errs []setError
	for _, s := range objs {
		switch spec := s.obj.Spec.(type) {
		case *networking.VirtualService:
			for _, ref := range subsetRefs(spec) {
				if msg := missingSubset(drs, model.ResolveHost(ref.dest.GetHost(), s.obj.Namespace), ref.dest.GetSubset()); msg != "" {
					errs = append(errs, setError{input: s.input, err: model.ConfigError{
						Location: s.obj.Location, Object: s.obj.ID(), Field: ref.field + ".subset",
						Message: msg, Warning: true,
					}})
				}
			}
		case *discoveryv1.EndpointSlice:
			name := spec.Labels[ServiceNameLabel]
			if spec.AddressType != discoveryv1.AddressTypeFQDN && !kubeServices[kubeServiceKey(s.obj.Namespace, name)] {
				errs = append(errs, setError{input: s.input, err: model.ConfigError{
					Location: s.obj.Location, Object: s.obj.ID(), Field: key("metadata.labels", ServiceNameLabel),
					Message: fmt.Sprintf("Service %s/%s is not defined; the endpoints are ignored", s.obj.Namespace, name),
					Warning: true,
				}})
			}
		}
	}
	return errs
}

func missingSubset(drs []drSubsets, host, subset string) string {
	var found *drSubsets
	for i := range drs {
		if drs[i].host == host || model.HostMatches(drs[i].host, host) {
			if drs[i].subsets[subset] {
				return ""
			}
			if found == nil {
				found = &drs[i]
			}
		}
	}
	if found == nil {
		return fmt.Sprintf("subset %q is not defined: no DestinationRule for host %s", subset, host)
	}
	return fmt.Sprintf("subset %q is not defined in %s for host %s", subset, found.id, host)
}

type subsetRef struct {
	field string
	dest  *networking.Destination
}

// subsetRefs lists the destinations of a VirtualService that name a subset.
func subsetRefs(vs *networking.VirtualService) []subsetRef {
	var out []subsetRef
	add := func(field string, d *networking.Destination) {
		if d.GetSubset() != "" {
			out = append(out, subsetRef{field: field, dest: d})
		}
	}
	for i, r := range vs.GetHttp() {
		f := idx("spec.http", i)
		for j, rd := range r.GetRoute() {
			add(idx(f+".route", j)+".destination", rd.GetDestination())
		}
		add(f+".mirror", r.GetMirror())
		for j, m := range r.GetMirrors() {
			add(idx(f+".mirrors", j)+".destination", m.GetDestination())
		}
	}
	for i, r := range vs.GetTcp() {
		for j, rd := range r.GetRoute() {
			add(idx(idx("spec.tcp", i)+".route", j)+".destination", rd.GetDestination())
		}
	}
	for i, r := range vs.GetTls() {
		for j, rd := range r.GetRoute() {
			add(idx(idx("spec.tls", i)+".route", j)+".destination", rd.GetDestination())
		}
	}
	return out
}

func kubeServiceKey(ns, name string) model.ServiceKey {
	return model.ServiceKey{Namespace: ns, Hostname: name + "." + ns + ".svc." + model.DefaultDomainSuffix}
}
