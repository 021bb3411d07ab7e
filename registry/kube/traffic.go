package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sextant-mesh/sextant/model"
)

// SetTrafficState implements `sextantctl traffic set` for Kubernetes: it
// sets the label traffic.sextant.io/state on the Pods behind the endpoints
// of host in namespace whose labels match selector (and on the
// WorkloadEntries the Service or ServiceEntry selects). The informers then
// bring the change back as endpoint labels, like any other edit. host is a
// Service's <name>.<namespace>.svc.cluster.local or a ServiceEntry host.
func (r *Registry) SetTrafficState(ctx context.Context, namespace, host string, selector map[string]string, state string) error {
	switch state {
	case model.StateRunning, model.StateKeepalive:
	default:
		return fmt.Errorf("state %q must be %q or %q", state, model.StateRunning, model.StateKeepalive)
	}
	select {
	case <-r.synced:
	default:
		return errors.New("kube registry: not synced yet")
	}
	pods, wes, err := r.trafficTargets(namespace, host)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{model.TrafficStateLabel: state}}})
	if err != nil {
		return fmt.Errorf("encode patch: %w", err)
	}
	matched := 0
	var errs []error
	for _, p := range pods {
		if !model.LabelsMatch(selector, p.Labels) {
			continue
		}
		matched++
		if p.Labels[model.TrafficStateLabel] == state {
			continue
		}
		if _, err := r.kube.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("label Pod %s/%s: %w", p.Namespace, p.Name, err))
		}
	}
	for _, we := range wes {
		labels := weLabels(we)
		if !model.LabelsMatch(selector, labels) {
			continue
		}
		matched++
		if labels[model.TrafficStateLabel] == state {
			continue
		}
		if _, err := r.istio.NetworkingV1().WorkloadEntries(we.Namespace).Patch(ctx, we.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("label WorkloadEntry %s/%s: %w", we.Namespace, we.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if matched == 0 {
		return fmt.Errorf("no Pod or WorkloadEntry behind %s in namespace %s matches the selector", host, namespace)
	}
	r.log.Info("traffic state set", "namespace", namespace, "host", host, "selector", selector, "state", state, "workloads", matched)
	return nil
}

// weLabels are a WorkloadEntry's effective labels: spec labels, overridden
// by metadata labels (as registry/config merges them).
func weLabels(we *istionet.WorkloadEntry) map[string]string {
	l := map[string]string{}
	for k, v := range we.Spec.GetLabels() {
		l[k] = v
	}
	for k, v := range we.Labels {
		l[k] = v
	}
	return l
}

// trafficTargets finds the Pods and WorkloadEntries behind host.
func (r *Registry) trafficTargets(namespace, host string) ([]*corev1.Pod, []*istionet.WorkloadEntry, error) {
	suffix := "." + namespace + ".svc." + model.DefaultDomainSuffix
	var selector map[string]string
	var pods []*corev1.Pod
	if name, ok := strings.CutSuffix(host, suffix); ok && !strings.Contains(name, ".") {
		obj, exists, _ := r.svcInf.GetStore().GetByKey(namespace + "/" + name)
		if !exists {
			return nil, nil, fmt.Errorf("no Service %s/%s", namespace, name)
		}
		selector = obj.(*corev1.Service).Spec.Selector
		seen := map[types.NamespacedName]bool{}
		objs, _ := r.sliceInf.GetIndexer().ByIndex(sliceServiceIndex, namespace+"/"+name)
		for _, o := range objs {
			for _, ref := range sliceRefs(o.(*discoveryv1.EndpointSlice)) {
				if seen[ref] {
					continue
				}
				seen[ref] = true
				if p, ok, _ := r.podInf.GetStore().GetByKey(ref.Namespace + "/" + ref.Name); ok {
					pods = append(pods, p.(*corev1.Pod))
				}
			}
		}
		sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	} else {
		found := false
		if inf := r.istioInf[kindServiceEntryNS]; inf != nil {
			for _, o := range r.listNS(inf, namespace) {
				se := o.(*istionet.ServiceEntry)
				for _, h := range se.Spec.GetHosts() {
					if h == host {
						found = true
						selector = se.Spec.GetWorkloadSelector().GetLabels()
					}
				}
			}
		}
		if !found {
			return nil, nil, fmt.Errorf("no Service or ServiceEntry for host %s in namespace %s", host, namespace)
		}
	}
	var wes []*istionet.WorkloadEntry
	if inf := r.istioInf["WorkloadEntry"]; inf != nil && len(selector) > 0 {
		for _, o := range r.listNS(inf, namespace) {
			we := o.(*istionet.WorkloadEntry)
			if model.LabelsMatch(selector, weLabels(we)) {
				wes = append(wes, we)
			}
		}
		sort.Slice(wes, func(i, j int) bool { return wes[i].Name < wes[j].Name })
	}
	return pods, wes, nil
}
