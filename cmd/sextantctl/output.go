package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// Output formats for -o.
const (
	outTable = ""
	outJSON  = "json"
	outYAML  = "yaml"
	outWide  = "wide"
)

// addOutputFlag registers -o with the given formats besides the default
// table.
func addOutputFlag(cmd *cobra.Command, out *string, formats ...string) {
	cmd.Flags().StringVarP(out, "output", "o", "", "output format: "+strings.Join(formats, "|")+" (default: a table for people)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
}

// checkOutput validates an -o value.
func checkOutput(out string, formats ...string) error {
	if out == outTable || slices.Contains(formats, out) {
		return nil
	}
	return &usageError{fmt.Errorf("unknown output format %q: this command prints %s", out, formatList(formats))}
}

// formatList says which -o values a command takes: "a table (the default),
// json or yaml".
func formatList(formats []string) string {
	all := append([]string{"a table (the default, no -o)"}, formats...)
	if len(all) == 1 {
		return all[0]
	}
	return strings.Join(all[:len(all)-1], ", ") + " or " + all[len(all)-1]
}

// table aligns tab-separated rows into columns; Flush writes them without
// the padding tabwriter leaves after an empty last cell.
type table struct {
	*tabwriter.Writer
	buf bytes.Buffer
	out io.Writer
}

// newTable returns an aligned writer for tab-separated rows.
func newTable(w io.Writer) *table {
	t := &table{out: w}
	t.Writer = tabwriter.NewWriter(&t.buf, 0, 8, 3, ' ', 0)
	return t
}

// Flush aligns the rows written so far and writes them out.
func (t *table) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	var out bytes.Buffer
	for line := range bytes.Lines(t.buf.Bytes()) {
		out.Write(bytes.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	t.buf.Reset()
	_, err := t.out.Write(out.Bytes())
	return err
}

// row writes one tab-separated row.
func row(w io.Writer, cells ...string) {
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// writeStructured prints v as JSON or YAML.
func writeStructured(w io.Writer, format string, v any) error {
	if format == outJSON {
		return writeJSON(w, v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	return writeJSONAsYAML(w, b)
}

// writeJSONAsYAML converts a JSON document to YAML.
func writeJSONAsYAML(w io.Writer, doc []byte) error {
	y, err := yaml.JSONToYAML(doc)
	if err != nil {
		return fmt.Errorf("convert to YAML: %w", err)
	}
	_, err = w.Write(y)
	return err
}

// formatAge renders a duration the way kubectl does: 45s, 3m, 5h, 2d.
func formatAge(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
		fallthrough
	case d < 2*time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < 2*time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

// age formats the time since t, or "" when t is unset or output is stable.
func (e *env) age(t time.Time) string {
	if t.IsZero() || e.stable {
		return ""
	}
	return formatAge(e.now().Sub(t))
}

// mask hides a volatile value in stable (test) output.
func (e *env) mask(v string) string {
	if e.stable && v != "" {
		return "<masked>"
	}
	return v
}

// orDash shows "-" for an empty cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
