package etcdclient

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/sextant-mesh/sextant/api/etcd/v1"
	trafficv1 "github.com/sextant-mesh/sextant/api/traffic/v1alpha1"
	"github.com/sextant-mesh/sextant/model"
)

// SetTrafficState sets the traffic-state label of the instances of host in
// namespace whose labels match selector, in one transaction that keeps each
// instance's lease. It returns how many instances it changed; a concurrent
// change of one of them makes it retry, a few times.
func (c *Client) SetTrafficState(ctx context.Context, namespace, host string, selector map[string]string, state string) (int, error) {
	switch state {
	case trafficv1.StateRunning, trafficv1.StateKeepalive:
	default:
		return 0, fmt.Errorf("state %q must be %q or %q", state, trafficv1.StateRunning, trafficv1.StateKeepalive)
	}
	prefix := v1.InstancesPrefix(c.prefix, namespace, host)
	for attempt := 0; attempt < 5; attempt++ {
		resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			return 0, fmt.Errorf("traffic state: get %s: %w", prefix, err)
		}
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		for _, kv := range resp.Kvs {
			in, err := v1.DecodeInstance(kv.Value)
			if err != nil || !model.LabelsMatch(selector, in.Labels) || in.Labels[trafficv1.StateLabel] == state {
				continue
			}
			labels := make(map[string]string, len(in.Labels)+1)
			for k, v := range in.Labels {
				labels[k] = v
			}
			labels[trafficv1.StateLabel] = state
			in.Labels = labels
			b, err := json.Marshal(in)
			if err != nil {
				return 0, fmt.Errorf("traffic state: encode %s: %w", kv.Key, err)
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
			ops = append(ops, clientv3.OpPut(string(kv.Key), string(b), clientv3.WithIgnoreLease()))
		}
		if len(ops) == 0 {
			return 0, nil
		}
		tr, err := c.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return 0, fmt.Errorf("traffic state: update %s: %w", prefix, err)
		}
		if tr.Succeeded {
			return len(ops), nil
		}
	}
	return 0, fmt.Errorf("traffic state: %s kept changing; try again", prefix)
}
