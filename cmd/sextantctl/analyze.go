package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/config"
	"github.com/sextant-mesh/sextant/registry/file"
)

// stdinName is how analyze names standard input in its findings.
const stdinName = "<stdin>"

// analysis is the outcome of analyze, also its -o json|yaml form.
type analysis struct {
	Files    []string            `json:"files"`
	Rejected []string            `json:"rejected"`
	Errors   int                 `json:"errors"`
	Warnings int                 `json:"warnings"`
	Issues   []model.ConfigError `json:"issues"`
}

func newAnalyzeCommand(e *env) *cobra.Command {
	var output string
	var strict bool
	cmd := &cobra.Command{
		Use:   "analyze <dir|file|->...",
		Short: "Check config files offline, with the server's own parsing and validation",
		Long: `Check Kubernetes and Istio config files without a running control plane.

analyze applies exactly what 'sextant serve --config-dir' applies: every file
is parsed and validated on its own (a file with any error is rejected as a
whole: the server keeps serving its previous version), then the valid files
are checked together (duplicate objects, EndpointSlices without a Service)
and merged as the server merges them, where references are checked as
istioctl analyze checks them: a VirtualService host or destination that
matches no service and a subset no DestinationRule defines (IST0101), a
DestinationRule subset whose labels select no endpoint (IST0127). Against
a server with other registries too, a service defined only there is
reported here as not found; the server's /debug/config_errors sees them all.

Directories are read as the server reads them: *.yaml, *.yml and *.json
files, recursively, skipping names that start with a dot. Files named on the
command line are read whatever their extension; "-" reads standard input.

Each finding names the file, line and document, the object and the field.
The exit code is 0 when there are no errors (warnings are allowed; --strict
fails on them too) and 1 otherwise.`,
		Example: `  # A directory, as 'sextant serve --config-dir' would read it
  sextantctl analyze examples/mesh

  # Some files, failing on warnings too (for CI)
  sextantctl analyze --strict vs.yaml dr.yaml

  # From a pipe
  kubectl get virtualservices -o yaml | sextantctl analyze -`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &usageError{fmt.Errorf("%s needs at least one directory or file (or - for standard input)", cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outJSON, outYAML); err != nil {
				return err
			}
			a, err := analyze(args, cmd.InOrStdin())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output != outTable {
				if err := writeStructured(w, output, a); err != nil {
					return err
				}
			} else {
				a.write(w)
			}
			switch {
			case a.Errors > 0 && len(a.Rejected) > 0:
				return fmt.Errorf("%s in %s; rejected as a whole: %s", plural(a.Errors, "error"), plural(len(a.Files), "file"), strings.Join(a.Rejected, ", "))
			case a.Errors > 0:
				return fmt.Errorf("%s in %s", plural(a.Errors, "error"), plural(len(a.Files), "file"))
			case strict && a.Warnings > 0:
				return fmt.Errorf("%s in %s (--strict fails on warnings)", plural(a.Warnings, "warning"), plural(len(a.Files), "file"))
			}
			return nil
		},
	}
	addOutputFlag(cmd, &output, outJSON, outYAML)
	cmd.Flags().BoolVar(&strict, "strict", false, "exit non-zero on warnings as well as errors")
	return cmd
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// analyze reads, parses and validates the inputs the way the file registry
// does: config.Parse per file, then config.Build over the valid ones.
func analyze(args []string, stdin io.Reader) (*analysis, error) {
	paths, err := inputFiles(args)
	if err != nil {
		return nil, err
	}
	type input struct {
		path string
		res  *config.Result
	}
	inputs := make([]input, 0, len(paths))
	var good []*config.Result
	for _, p := range paths {
		var data []byte
		var err error
		if p == stdinName {
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(p)
		}
		if err != nil {
			// The registry reports an unreadable file the same way.
			res := &config.Result{Location: p, Errors: []model.ConfigError{{
				Registry: file.RegistryName, Location: p, Message: fmt.Sprintf("cannot read file: %v", err),
			}}}
			inputs = append(inputs, input{p, res})
			continue
		}
		res := config.Parse(p, data)
		for i := range res.Errors {
			res.Errors[i].Registry = file.RegistryName
		}
		inputs = append(inputs, input{p, res})
		if res.Valid() {
			good = append(good, res)
		}
	}
	out := config.Build(file.RegistryName, good)
	a := &analysis{Files: paths, Rejected: []string{}, Issues: []model.ConfigError{}}
	for _, in := range inputs {
		issues := append(append([]model.ConfigError(nil), in.res.Errors...), out.ErrorsFor(in.path)...)
		if !in.res.Valid() {
			a.Rejected = append(a.Rejected, in.path)
		}
		for _, is := range issues {
			if is.Warning {
				a.Warnings++
			} else {
				a.Errors++
			}
		}
		a.Issues = append(a.Issues, issues...)
	}
	// References from routing config to services, subsets and endpoints
	// are checked on the merged model, exactly as the server checks them.
	for _, is := range referenceWarnings(out) {
		a.Warnings++
		a.Issues = append(a.Issues, is)
	}
	// Findings in input order, each input's in the order found.
	inputOf := func(loc string) int {
		for i, in := range inputs {
			if loc == in.path || strings.HasPrefix(loc, in.path+":") || strings.HasPrefix(loc, in.path+"#") {
				return i
			}
		}
		return len(inputs)
	}
	sort.SliceStable(a.Issues, func(i, j int) bool {
		return inputOf(a.Issues[i].Location) < inputOf(a.Issues[j].Location)
	})
	return a, nil
}

// referenceWarnings merges out into a snapshot, as the server does, and
// returns the snapshot's checks of references (istioctl analyze's codes).
func referenceWarnings(out *config.Output) []model.ConfigError {
	agg := model.NewAggregator()
	shard := agg.NewShard(file.RegistryName)
	shard.Update(func(tx *model.Txn) {
		for _, svc := range out.Services {
			tx.SetService(svc)
		}
		for k, eps := range out.Endpoints {
			tx.SetEndpoints(k, eps)
		}
		for _, c := range out.Configs {
			tx.SetConfig(c)
		}
	})
	shard.MarkSynced()
	snap, _ := agg.Build()
	var warns []model.ConfigError
	for _, e := range snap.Errors {
		if e.Code != "" {
			warns = append(warns, e)
		}
	}
	return warns
}

// write prints the findings for people.
func (a *analysis) write(w io.Writer) {
	for _, is := range a.Issues {
		level := "Error"
		if is.Warning {
			level = "Warning"
		}
		fmt.Fprintf(w, "%s: %s\n", level, is.Error())
	}
	switch {
	case a.Errors == 0 && a.Warnings == 0:
		fmt.Fprintf(w, "✔ No validation issues found when analyzing %s.\n", plural(len(a.Files), "file"))
	case a.Errors == 0:
		fmt.Fprintf(w, "%s, no errors, in %s.\n", plural(a.Warnings, "warning"), plural(len(a.Files), "file"))
	default:
		for _, r := range a.Rejected {
			fmt.Fprintf(w, "Rejected: %s: none of its objects would be served (a running server keeps its previous valid version)\n", r)
		}
	}
}

// isConfigFile mirrors the file registry: the extensions it reads.
func isConfigFile(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// inputFiles expands the arguments into files, sorted and without
// duplicates, the way the file registry walks its directory.
func inputFiles(args []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, arg := range args {
		if arg == "-" {
			add(stdinName)
			continue
		}
		info, err := os.Stat(arg)
		if err != nil {
			return nil, fmt.Errorf("analyze %s: %w", arg, err)
		}
		if !info.IsDir() {
			add(filepath.Clean(arg))
			continue
		}
		root := filepath.Clean(arg)
		n := len(out)
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			if p != root && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !isConfigFile(p) {
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
					return nil
				}
			} else if !d.Type().IsRegular() {
				return nil
			}
			add(p)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("analyze %s: %w", arg, err)
		}
		if len(out) == n {
			return nil, fmt.Errorf("analyze %s: no config files (*.yaml, *.yml, *.json) in the directory", arg)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		// Standard input first, then paths in the registry's order.
		if (out[i] == stdinName) != (out[j] == stdinName) {
			return out[i] == stdinName
		}
		return out[i] < out[j]
	})
	return out, nil
}
