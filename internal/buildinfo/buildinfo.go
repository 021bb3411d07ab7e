// Package buildinfo says which build of Sextant is running: the version and
// commit stamped at build time (the Makefile passes -ldflags -X), or, for a
// plain `go build`/`go install`, what the Go toolchain recorded in the
// binary (module version, vcs.revision).
//
// It is a leaf: it imports no Sextant package, so the server, the CLI and
// the debug API can all report the same thing.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Set at link time, e.g.
//
//	-X github.com/sextant-mesh/sextant/internal/buildinfo.version=v0.3.0
//	-X github.com/sextant-mesh/sextant/internal/buildinfo.commit=<full sha>
//
// These are the only package-level variables the linker can set; they are
// never written at run time.
var (
	version string
	commit  string
)

// Info identifies a build.
type Info struct {
	// Version is the stamped version, else the module version, else "dev".
	Version string
	// Commit is the full commit hash the binary was built from ("" when
	// unknown), with "-dirty" when the tree had uncommitted changes.
	Commit string
}

// Get returns the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return get(version, commit, bi)
}

func get(stampedVersion, stampedCommit string, bi *debug.BuildInfo) Info {
	info := Info{Version: stampedVersion, Commit: stampedCommit}
	if bi == nil {
		if info.Version == "" {
			info.Version = "dev"
		}
		return info
	}
	if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	if info.Commit == "" {
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if info.Commit != "" && modified {
			info.Commit += "-dirty"
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	return info
}

// String is "<version>" or "<version> (commit <hash>)".
func (i Info) String() string {
	if i.Commit == "" || strings.Contains(i.Version, i.Commit) {
		return i.Version
	}
	return i.Version + " (commit " + i.Commit + ")"
}
