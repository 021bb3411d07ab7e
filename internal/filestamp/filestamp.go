// Package filestamp identifies a version of a file cheaply, by its
// modification time and size, for code that re-reads files when they
// change (rotated certificates, JWKS files, plugged-in CA files). It was
// three private copies; it imports no Sextant package.
package filestamp

import (
	"os"
	"time"
)

// Stamp is what a file looked like when stamped. Stamps are comparable:
// two equal stamps mean "probably unchanged"; the zero Stamp is a file
// that could not be stat'ed.
type Stamp struct {
	Mod    time.Time
	Size   int64
	Exists bool
}

// Of stamps the file at path. On error it returns the zero Stamp and the
// error.
func Of(path string) (Stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Stamp{}, err
	}
	return Stamp{Mod: fi.ModTime(), Size: fi.Size(), Exists: true}, nil
}
