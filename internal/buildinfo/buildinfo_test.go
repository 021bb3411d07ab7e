package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestGet(t *testing.T) {
	vcs := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/sextant-mesh/sextant", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, c := range []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
		str             string
	}{
		{"stamped wins", "v1.2.3", "abc", vcs, Info{"v1.2.3", "abc"}, "v1.2.3 (commit abc)"},
		{"vcs fallback", "", "", vcs, Info{"dev", "0123456789abcdef0123456789abcdef01234567-dirty"},
			"dev (commit 0123456789abcdef0123456789abcdef01234567-dirty)"},
		{"module version", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, Info{"v0.4.0", ""}, "v0.4.0"},
		{"nothing known", "", "", nil, Info{"dev", ""}, "dev"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := get(c.version, c.commit, c.bi)
			if got != c.want || got.String() != c.str {
				t.Errorf("get = %+v %q, want %+v %q", got, got.String(), c.want, c.str)
			}
		})
	}
}
