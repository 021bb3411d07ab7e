package transport

import (
	"encoding/xml"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// junit is the part of h2spec's JUnit report read here.
type junit struct {
	Suites []struct {
		Package string `xml:"package,attr"`
		Name    string `xml:"name,attr"`
		Cases   []struct {
			Package   string    `xml:"package,attr"`
			ClassName string    `xml:"classname,attr"`
			Failure   *struct{} `xml:"failure"`
			Error     *struct{} `xml:"error"`
			Skipped   *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// h2specRun runs h2spec against addr (plaintext, POSTing to the ADS
// method) and returns each test's result: "pass", "fail" or "skip".
func h2specRun(t *testing.T, bin, addr string) map[string]string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	cmd := exec.Command(bin, "-h", "127.0.0.1", "-p", port, "-P", methodSotw, "-o", "3", "-j", report)
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("h2spec: %v\n%s", err, out)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("h2spec wrote no report: %v\n%s", err, out)
	}
	var r junit
	if err := xml.Unmarshal(b, &r); err != nil {
		t.Fatalf("h2spec report: %v", err)
	}
	res := map[string]string{}
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			id := s.Package + " " + s.Name + ": " + c.ClassName
			switch {
			case c.Skipped != nil:
				res[id] = "skip"
			case c.Failure != nil || c.Error != nil:
				res[id] = "fail"
			default:
				res[id] = "pass"
			}
		}
	}
	if len(res) == 0 {
		t.Fatalf("h2spec ran no test:\n%s", out)
	}
	return res
}

// TestH2Spec runs h2spec against both transports: the lean transport must
// fail no test that grpc-go passes. Set SEXTANT_H2SPEC to the binary
// (hack/h2spec.sh builds it).
func TestH2Spec(t *testing.T) {
	bin := os.Getenv("SEXTANT_H2SPEC")
	if bin == "" {
		t.Skip("SEXTANT_H2SPEC not set (hack/h2spec.sh builds h2spec)")
	}
	results := map[string]map[string]string{}
	for _, tr := range transports {
		env := startServer(t, tr)
		start := time.Now()
		results[tr] = h2specRun(t, bin, env.Addr)
		counts := map[string]int{}
		for _, r := range results[tr] {
			counts[r]++
		}
		t.Logf("h2spec against %s: %d passed, %d failed, %d skipped (%v)", tr, counts["pass"], counts["fail"], counts["skip"], time.Since(start).Round(time.Millisecond))
	}
	var ids []string
	for id := range results["grpc"] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var worse, both []string
	for _, id := range ids {
		g, l := results["grpc"][id], results["lean"][id]
		switch {
		case g == "pass" && l != "pass":
			worse = append(worse, id)
		case g == "fail" && l == "fail":
			both = append(both, id)
		case g != l:
			t.Logf("grpc %s, lean %s: %s", g, l, id)
		}
	}
	for _, id := range both {
		t.Logf("both fail: %s", id)
	}
	if len(worse) > 0 {
		t.Errorf("lean fails %d h2spec tests that grpc-go passes:\n%s", len(worse), strings.Join(worse, "\n"))
	}
}
