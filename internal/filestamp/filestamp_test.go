package filestamp

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if st, err := Of(p); err == nil || st != (Stamp{}) {
		t.Errorf("missing file: %+v, %v; want the zero Stamp and an error", st, err)
	}
	if err := os.WriteFile(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := Of(p)
	if err != nil || !a.Exists || a.Size != 3 {
		t.Fatalf("Of = %+v, %v", a, err)
	}
	if b, _ := Of(p); b != a {
		t.Errorf("unchanged file stamped differently: %+v vs %+v", a, b)
	}
	if err := os.WriteFile(p, []byte("three"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Same size, later time also counts as a change.
	later := a.Mod.Add(time.Second)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	if b, _ := Of(p); b == a || b.Size != 5 {
		t.Errorf("changed file has the same stamp: %+v", b)
	}
}
