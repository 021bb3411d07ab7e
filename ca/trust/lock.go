package trust

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LockFile is the advisory lock that serializes replicas sharing one
// --ca-dir (a shared volume): only one of them generates the first root or
// renews it, and the others adopt what it wrote.
const LockFile = ".sextant-ca.lock"

// lockDir takes an exclusive flock on dir's lock file, waiting for another
// process that holds it. The lock is held only while files are read or
// written, so the wait is short.
func lockDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("CA directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("CA directory lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
