package main

import (
	"bytes"
	"strings"
	"testing"
)

func runRoot(args ...string) error {
	root := newRootCommand()
	root.SetArgs(args)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	return root.Execute()
}

func TestFlagWording(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--config-dri", "x"}, "unknown flag: --config-dri; did you mean --config-dir?"},
		{[]string{"serve", "--secure-adr=:1"}, "did you mean --secure-addr?"},
		{[]string{"serve", "--bogus"}, "unknown flag: --bogus (see 'sextant serve --help' for the flags)"},
		{[]string{"serve", "--log-level", "verbose", "--monitoring-addr", "127.0.0.1:0"}, `--log-level "verbose": want debug, info, warn or error`},
	} {
		err := runRoot(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("sextant %v: %v, want %q", c.args, err, c.want)
		}
	}
	for in, want := range map[[2]string]int{{"config-dri", "config-dir"}: 2, {"", "abc"}: 3, {"same", "same"}: 0, {"kitten", "sitting"}: 3} {
		if got := editDistance(in[0], in[1]); got != want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", in[0], in[1], got, want)
		}
	}
}
