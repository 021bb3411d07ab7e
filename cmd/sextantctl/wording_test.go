package main

import (
	"strings"
	"testing"
)

// TestUsageWording: bad flags are refused before contacting the server,
// with what would have been accepted.
func TestUsageWording(t *testing.T) {
	addr := closedAddr(t)
	mustFail(t, ctl(t, addr, "push-log", "--tail", "-1"), "--tail -1: want a number of pushes (1 or more), or 0 for all")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"push-log", "-o", "xml"}, `unknown output format "xml": this command prints a table (the default, no -o), json or yaml`},
		{[]string{"proxy-status", "-o", "wide"}, `unknown output format "wide": this command prints a table (the default, no -o), json or yaml`},
		{[]string{"pc", "route", "x.default", "-o", "xml"}, `unknown output format "xml": this command prints a table (the default, no -o), json, yaml or wide`},
		{[]string{"traffic", "status", "-o", "table"}, `unknown output format "table": this command prints a table (the default, no -o), json or yaml`},
	} {
		r := ctl(t, addr, c.args...)
		mustFail(t, r, c.want)
		if strings.Contains(r.stderr, "cannot connect") {
			t.Errorf("%v contacted the server before checking -o: %s", c.args, r.stderr)
		}
	}
}
