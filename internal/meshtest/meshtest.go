// Package meshtest builds model snapshots from YAML for tests and
// benchmarks, through the same parsing and conversion as the file registry.
package meshtest

import (
	"fmt"
	"os"
	"testing"

	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/config"
)

// Load parses the given inputs (location → YAML) into an aggregator shard.
// Any error (warnings aside) is returned.
func Load(shard *model.Shard, inputs map[string][]byte) error {
	var results []*config.Result
	for loc, data := range inputs {
		r := config.Parse(loc, data)
		for _, e := range r.Errors {
			if !e.Warning {
				return fmt.Errorf("%s", e.Error())
			}
		}
		results = append(results, r)
	}
	out := config.Build("file", results)
	for _, e := range out.Errors {
		if !e.Warning {
			return fmt.Errorf("%s", e.Error())
		}
	}
	shard.Update(func(tx *model.Txn) {
		for _, s := range out.Services {
			tx.SetService(s)
		}
		for k, eps := range out.Endpoints {
			tx.SetEndpoints(k, eps)
		}
		for _, c := range out.Configs {
			tx.SetConfig(c)
		}
		tx.SetErrors("meshtest", out.Errors)
	})
	shard.MarkSynced()
	return nil
}

// Snapshot builds a snapshot from YAML files on disk.
func Snapshot(t testing.TB, files ...string) *model.Snapshot {
	t.Helper()
	inputs := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = b
	}
	return FromYAML(t, inputs)
}

// FromYAML builds a snapshot from in-memory inputs.
func FromYAML(t testing.TB, inputs map[string][]byte) *model.Snapshot {
	t.Helper()
	agg := model.NewAggregator()
	if err := Load(agg.NewShard("file"), inputs); err != nil {
		t.Fatal(err)
	}
	snap, _ := agg.Build()
	return snap
}
