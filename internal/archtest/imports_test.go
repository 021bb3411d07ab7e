package archtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/sextant-mesh/sextant"

// rule is one row of ARCHITECTURE.md's import table.
type rule struct {
	pkg   string   // a path, or prefix/* for everything under prefix
	allow []string // paths or prefix/*; empty: no Sextant package
	line  int
}

var code = regexp.MustCompile("`([^`]+)`")

// readRules parses the table under "## Import rules" in ARCHITECTURE.md.
func readRules(t *testing.T, path string) []rule {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rules []rule
	inSection, inTable := false, false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			if inSection {
				return rules
			}
			inSection = line == "## Import rules"
			continue
		case !inSection:
			continue
		case !strings.HasPrefix(line, "|"):
			if inTable {
				return rules
			}
			continue
		}
		inTable = true
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 2 || strings.TrimSpace(cells[0]) == "package" || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		m := code.FindStringSubmatch(cells[0])
		if m == nil {
			t.Fatalf("%s:%d: import rule row without a `package`: %s", path, n, line)
		}
		r := rule{pkg: m[1], line: n}
		for _, a := range code.FindAllStringSubmatch(cells[1], -1) {
			r.allow = append(r.allow, a[1])
		}
		if len(r.allow) == 0 && strings.TrimSpace(cells[1]) != "—" {
			t.Fatalf("%s:%d: say — when a package may import no Sextant package: %s", path, n, line)
		}
		rules = append(rules, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Fatalf("%s has no import rules table under \"## Import rules\"", path)
	}
	return rules
}

// matches reports whether a pattern (path or prefix/*) covers pkg, and how
// specific the match is (longer is more specific; exact beats any prefix).
func matches(pattern, pkg string) (bool, int) {
	if prefix, ok := strings.CutSuffix(pattern, "/*"); ok {
		if strings.HasPrefix(pkg, prefix+"/") {
			return true, len(prefix)
		}
		return false, 0
	}
	if pattern == pkg {
		return true, 1 << 20
	}
	return false, 0
}

// ruleFor returns the most specific rule covering pkg.
func ruleFor(rules []rule, pkg string) *rule {
	var best *rule
	bestScore := -1
	for i := range rules {
		if ok, score := matches(rules[i].pkg, pkg); ok && score > bestScore {
			best, bestScore = &rules[i], score
		}
	}
	return best
}

type listed struct {
	ImportPath string
	Imports    []string
	Module     *struct{ Path string }
	Standard   bool
}

// modulePackages lists the module's packages and their (non-test) imports,
// relative to the module path.
func modulePackages(t *testing.T, root string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Imports,Module,Standard", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Standard || p.Module == nil || p.Module.Path != module {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		var imports []string
		for _, imp := range p.Imports {
			if r, ok := strings.CutPrefix(imp, module+"/"); ok {
				imports = append(imports, r)
			}
		}
		pkgs[rel] = imports
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	root := filepath.Join("..", "..")
	rules := readRules(t, filepath.Join(root, "ARCHITECTURE.md"))
	pkgs := modulePackages(t, root)
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages of %s", len(pkgs), module)
	}
	names := make([]string, 0, len(pkgs))
	for p := range pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	used := map[*rule]bool{}
	for _, pkg := range names {
		r := ruleFor(rules, pkg)
		if r == nil {
			t.Errorf("%s: no row of ARCHITECTURE.md's import rules covers it; add one", pkg)
			continue
		}
		used[r] = true
		for _, imp := range pkgs[pkg] {
			if !allowed(r, imp) {
				t.Errorf("%s imports %s, which ARCHITECTURE.md:%d (row %s) does not allow", pkg, imp, r.line, r.pkg)
			}
		}
	}
	for i := range rules {
		if !used[&rules[i]] {
			t.Errorf("ARCHITECTURE.md:%d: row %s covers no package; remove or fix it", rules[i].line, rules[i].pkg)
		}
	}
}

func allowed(r *rule, imp string) bool {
	for _, a := range r.allow {
		if ok, _ := matches(a, imp); ok {
			return true
		}
	}
	return false
}

// TestRuleMatching: the table's patterns mean what ARCHITECTURE.md says.
func TestRuleMatching(t *testing.T) {
	rules := []rule{{pkg: "registry/*"}, {pkg: "registry/etcd"}, {pkg: "registry/etcd/*"}, {pkg: "model"}}
	for pkg, want := range map[string]string{
		"registry/file":            "registry/*",
		"registry/etcd":            "registry/etcd",
		"registry/etcd/etcdclient": "registry/etcd/*",
		"model":                    "model",
		"modelx":                   "",
		"registry":                 "",
	} {
		got := ""
		if r := ruleFor(rules, pkg); r != nil {
			got = r.pkg
		}
		if got != want {
			t.Errorf("ruleFor(%s) = %q, want %q", pkg, got, want)
		}
	}
	if !allowed(&rule{allow: []string{"api/*"}}, "api/traffic/v1alpha1") || allowed(&rule{allow: []string{"api/*"}}, "api") {
		t.Error("api/* must allow packages under api/ only")
	}
}
