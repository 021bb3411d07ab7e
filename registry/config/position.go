package config

import (
	"fmt"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// position finds where a field of a document is written, so an error
// points at the field's own line and column rather than the document's
// first line. It parses the document's text into YAML nodes (JSON is YAML)
// only when the document has an error.
type position struct {
	root *yaml.Node
	base int // line of the document text's first line in the input
}

func newPosition(data []byte, base int) *position {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil || len(n.Content) == 0 {
		return &position{base: base}
	}
	return &position{root: n.Content[0], base: base}
}

// of returns the input line and column of field (a path like
// `spec.http[0].route[1].weight` or `metadata.labels["app"]`), or of its
// nearest written ancestor when the field itself is absent. It returns 0, 0
// when nothing of the path is written.
func (p *position) of(field string) (line, col int) {
	n := p.root
	if n == nil {
		return 0, 0
	}
	found := false
	for _, seg := range splitPath(field) {
		next := child(n, seg)
		if next == nil {
			break
		}
		n, found = next, true
	}
	if !found {
		return 0, 0
	}
	return p.base + n.Line - 1, n.Column
}

// segment is one step of a field path: a key or an index.
type segment struct {
	key   string
	index int // -1 for a key
}

// splitPath splits `a.b[2]["x.y"]` into a, b, 2, x.y.
func splitPath(path string) []segment {
	var out []segment
	for i := 0; i < len(path); {
		switch path[i] {
		case '.':
			i++
		case '[':
			end := strings.IndexByte(path[i:], ']')
			if path[i+1:][0:1] == `"` {
				// A quoted key: find the closing quote, which may be
				// followed by the bracket.
				if s, err := strconv.QuotedPrefix(path[i+1:]); err == nil {
					k, _ := strconv.Unquote(s)
					out = append(out, segment{key: k, index: -1})
					i += 1 + len(s) + 1
					continue
				}
			}
			if end < 0 {
				return out
			}
			n, err := strconv.Atoi(path[i+1 : i+end])
			if err != nil {
				out = append(out, segment{key: path[i+1 : i+end], index: -1})
			} else {
				out = append(out, segment{index: n})
			}
			i += end + 1
		default:
			end := strings.IndexAny(path[i:], ".[")
			if end < 0 {
				end = len(path) - i
			}
			out = append(out, segment{key: path[i : i+end], index: -1})
			i += end
		}
	}
	return out
}

// child returns the node a segment selects under n: the value of a mapping
// key, or an element of a sequence.
func child(n *yaml.Node, seg segment) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch {
	case seg.index >= 0 && n.Kind == yaml.SequenceNode:
		if seg.index < len(n.Content) {
			return n.Content[seg.index]
		}
	case seg.index < 0 && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg.key {
				// Point at the key: a nested block starts on the line
				// after it, and editors show the key.
				v, k := n.Content[i+1], n.Content[i]
				return &yaml.Node{Kind: v.Kind, Content: v.Content, Alias: v.Alias, Line: k.Line, Column: k.Column}
			}
		}
	}
	return nil
}

// fieldLocation is a document's location with the field's line and column:
// "mesh.yaml:13939:7 (doc 734)".
func fieldLocation(input string, line, col, index int) string {
	if col > 0 {
		return fmt.Sprintf("%s:%d:%d (doc %d)", input, line, col, index)
	}
	return fmt.Sprintf("%s:%d (doc %d)", input, line, index)
}
