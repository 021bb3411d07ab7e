package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sextant-mesh/sextant/model"
	"github.com/sextant-mesh/sextant/registry/config"
)

// RegistryName names this registry in sources and errors.
const RegistryName = "file"

const (
	// debounce is how long the registry waits for file system events to
	// settle before re-reading; the server debounces pushes on its own
	// (100 ms by default), so this only has to cover one save. An atomic
	// save (write a temporary file, rename it over) is whole when its
	// rename arrives; an in-place write is a burst of write events, each
	// restarting the wait, so 10 ms of silence means the writer is done.
	// (fsnotify does not expose inotify's IN_CLOSE_WRITE, which would say
	// so exactly.) It was 50 ms: a weight edit converged in 153-159 ms.
	debounce = 10 * time.Millisecond
	// maxDelay bounds the wait when events keep coming.
	maxDelay = 500 * time.Millisecond
	// rewatchEvery is how often a vanished directory is looked for.
	rewatchEvery = 250 * time.Millisecond
	// DefaultMaxFileSize is the largest config file read unless
	// SetMaxFileSize says otherwise.
	DefaultMaxFileSize = 4 << 20
	// asyncParseSize is the size from which a changed file is parsed off
	// the watch loop, so smaller files' changes do not wait behind it.
	asyncParseSize = 256 << 10
)

// Registry serves the config files of a directory tree.
type Registry struct {
	dir     string
	shard   *model.Shard
	log     *slog.Logger
	running atomic.Bool
	// trafficMu serialises SetTrafficState's rewrites of the state file.
	trafficMu sync.Mutex
	// maxFileSize is the largest file read; set before Run.
	maxFileSize int64
	// parsed receives the results of files parsed off the watch loop.
	parsed chan parsedFile
	// ctx is Run's; parses off the loop stop sending when it is done.
	ctx context.Context

	// The fields below are owned by the goroutine running Run.

	files map[string]*fileState // by path
	// dirty is set when files changed since the last apply.
	dirty bool
	// reported is what was last passed to SetErrors, by path.
	reported map[string][]model.ConfigError
	// async is set after the initial load: from then on large files are
	// parsed off the loop.
	async bool
	// parseGen numbers parses off the loop, across files, so a result for
	// a file deleted and created again meanwhile is never taken as new.
	parseGen uint64
	// gone is set while the directory itself is missing (moved or
	// deleted as a whole): a fault, not an intent, so the last good
	// config keeps being served and the fault is reported.
	gone bool
}

// fileState is what the registry knows about one file.
type fileState struct {
	hash    uint64              // of the content last read
	readErr bool                // the last read failed; hash is stale
	errs    []model.ConfigError // errors of the content last read
	good    *config.Result      // the last valid version, nil if none
	// docs are the objects of the last parse by document text, so an edit
	// re-decodes only the documents it touched.
	docs config.DocCache
	// parsing is the generation of the newest parse under way off the
	// loop (0 if none); an older one's result is dropped.
	parsing uint64
}

// parsedFile is the result of a parse done off the watch loop.
type parsedFile struct {
	path string
	gen  uint64
	hash uint64
	res  *config.Result
	docs config.DocCache
}

// New returns a registry for the files under dir that writes to shard. A
// nil logger means slog.Default().
func New(dir string, shard *model.Shard, logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.Default()
	}
	return &Registry{
		dir:      filepath.Clean(dir),
		shard:    shard,
		log:      logger.With("registry", RegistryName, "dir", filepath.Clean(dir)),
		files:    map[string]*fileState{},
		reported: map[string][]model.ConfigError{},
		parsed:   make(chan parsedFile),

		maxFileSize: DefaultMaxFileSize,
	}
}

// SetMaxFileSize sets the largest config file the registry reads (bytes);
// a larger file is refused with an error naming it and the limit, and its
// last good version, if any, is served. Call it before Run.
func (r *Registry) SetMaxFileSize(n int64) { r.maxFileSize = n }

// Run loads the directory, marks the shard synced and then follows changes
// until ctx is cancelled, when it returns nil. It returns an error if the
// directory cannot be watched. Run may be called only once.
func (r *Registry) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("file registry: Run called more than once")
	}
	info, err := os.Stat(r.dir)
	if err != nil {
		return fmt.Errorf("file registry: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("file registry: %s is not a directory", r.dir)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("file registry: create watcher: %w", err)
	}
	defer w.Close()
	if err := w.Add(r.dir); err != nil {
		return fmt.Errorf("file registry: watch %s: %w", r.dir, err)
	}
	r.ctx = ctx
	r.watchTree(w, r.dir)
	r.rescan(r.dir)
	r.apply()
	r.shard.MarkSynced()
	r.async = true
	r.log.Info("initial load done", "files", len(r.files))

	pending := map[string]struct{}{}
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	var first time.Time // of the oldest pending event
	// rewatch ticks while the directory is gone: a removed directory's
	// watch is gone with it, so it is polled until it comes back.
	var rewatch <-chan time.Time
	var rewatchTicker *time.Ticker
	defer func() {
		if rewatchTicker != nil {
			rewatchTicker.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-rewatch:
			if !r.dirPresent() {
				continue
			}
			if err := w.Add(r.dir); err != nil {
				r.log.Warn("cannot watch config directory", "err", err)
				continue
			}
			r.log.Info("config directory is back; reading it again")
			rewatchTicker.Stop()
			rewatchTicker, rewatch = nil, nil
			r.gone = false
			r.dirty = true // the fault is cleared
			clear(pending)
			first = time.Time{}
			r.watchTree(w, r.dir)
			r.rescan(r.dir)
			r.apply()
		case pf := <-r.parsed:
			if st := r.files[pf.path]; st != nil && st.parsing == pf.gen {
				st.parsing = 0
				r.install(pf.path, st, pf.hash, pf.res, pf.docs)
				r.apply()
			}
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file registry: watcher closed")
			}
			if !r.handle(w, ev, pending) {
				continue
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			wait := debounce
			if left := maxDelay - now.Sub(first); left < wait {
				wait = max(left, 0)
			}
			timer.Reset(wait)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("file registry: watcher closed")
			}
			// Overflow means lost events: re-read everything.
			r.log.Warn("file watch error", "err", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				pending[r.dir] = struct{}{}
				timer.Reset(debounce)
			}
		case <-timer.C:
			first = time.Time{}
			if r.gone {
				clear(pending) // stale watches of the moved directory
				continue
			}
			if !r.dirPresent() {
				// The events were the directory going away (rm -r removes
				// its files first): keep every file's last good version.
				clear(pending)
				r.dirGone(w)
				rewatchTicker = time.NewTicker(rewatchEvery)
				rewatch = rewatchTicker.C
				continue
			}
			for p := range pending {
				r.rescan(p)
			}
			clear(pending)
			if r.dirty {
				r.apply()
			}
		}
	}
}

// dirPresent reports whether the configured directory exists as a
// directory.
func (r *Registry) dirPresent() bool {
	info, err := os.Stat(r.dir)
	return err == nil && info.IsDir()
}

// dirGone records that the directory vanished: the files it held keep
// serving their last good version, the fault is reported at the
// directory's path and the directory's stale watches are dropped (a moved
// directory's watches follow it to its new name).
func (r *Registry) dirGone(w *fsnotify.Watcher) {
	r.gone = true
	prefix := r.dir + string(filepath.Separator)
	for _, p := range w.WatchList() {
		if p == r.dir || strings.HasPrefix(p, prefix) {
			_ = w.Remove(p) // already gone with a deleted directory
		}
	}
	r.log.Error("config directory is gone (moved or deleted); keeping the last good config until it is back",
		"files", len(r.files))
	r.dirty = true
	r.apply()
}

// goneError is the error reported while the directory is missing.
func (r *Registry) goneError() model.ConfigError {
	return model.ConfigError{
		Registry: RegistryName, Location: r.dir,
		Message: fmt.Sprintf("config directory is gone (moved or deleted); serving the last good config of its %d files until it is back", len(r.files)),
	}
}

// handle records what an event requires re-reading and reports whether
// anything was recorded.
func (r *Registry) handle(w *fsnotify.Watcher, ev fsnotify.Event, pending map[string]struct{}) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	if r.hidden(ev.Name) {
		// Something like a ConfigMap mount swapping its "..data" link:
		// re-read the visible files next to it.
		dir := filepath.Dir(ev.Name)
		if dir == r.dir || !r.hidden(dir) {
			pending[dir] = struct{}{}
			return true
		}
		return false
	}
	if ev.Has(fsnotify.Create) {
		if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
			r.watchTree(w, ev.Name)
		}
	}
	pending[ev.Name] = struct{}{}
	return true
}

// hidden reports whether path or any directory between it and the root
// starts with a dot.
func (r *Registry) hidden(path string) bool {
	rel, err := filepath.Rel(r.dir, path)
	if err != nil || rel == "." {
		return false
	}
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if strings.HasPrefix(part, ".") {
			return true
		}
	}
	return false
}

// isConfigFile reports whether the registry reads path.
func (r *Registry) isConfigFile(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json":
		return !r.hidden(path)
	}
	return false
}

// watchTree watches dir and every visible directory under it.
func (r *Registry) watchTree(w *fsnotify.Watcher, dir string) {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			r.log.Warn("cannot read directory", "path", path, "err", err)
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if path != r.dir && r.hidden(path) {
			return filepath.SkipDir
		}
		if err := w.Add(path); err != nil {
			r.log.Warn("cannot watch directory", "path", path, "err", err)
		}
		return nil
	})
	if err != nil {
		r.log.Warn("cannot walk directory", "path", dir, "err", err)
	}
}

// rescan re-reads path: a file, or every config file under a directory.
// Files that no longer exist are forgotten.
func (r *Registry) rescan(path string) {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if path == r.dir {
			return // a fault, handled by Run: never forget the whole tree
		}
		r.forgetUnder(path, nil)
	case err != nil:
		// EACCES, EIO, ELOOP…: not a deletion. Keep serving what the
		// path served and report why it cannot be read.
		r.unreadableUnder(path, err)
	case info.IsDir():
		seen := map[string]bool{}
		_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // vanished meanwhile: forgotten below
				}
				// An unreadable directory: keep what it served.
				r.unreadableUnder(p, err)
				prefix := p + string(filepath.Separator)
				for known := range r.files {
					if known == p || strings.HasPrefix(known, prefix) {
						seen[known] = true
					}
				}
				if d != nil && d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				if p != r.dir && r.hidden(p) {
					return filepath.SkipDir
				}
				return nil
			}
			if !r.isConfigFile(p) {
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
					return nil
				}
			} else if !d.Type().IsRegular() {
				return nil // a FIFO or device would block ReadFile forever
			}
			seen[p] = true
			r.load(p)
			return nil
		})
		r.forgetUnder(path, seen)
	case r.isConfigFile(path) && info.Mode().IsRegular():
		r.load(path)
	default:
		r.forgetUnder(path, nil)
	}
}

// unreadableUnder marks the known files at or under path as unreadable:
// their last good version keeps being served and the error is reported.
func (r *Registry) unreadableUnder(path string, err error) {
	prefix := path + string(filepath.Separator)
	msg := fmt.Sprintf("cannot read file: %v", err)
	for p, st := range r.files {
		if p != path && !strings.HasPrefix(p, prefix) {
			continue
		}
		if st.readErr && len(st.errs) == 1 && st.errs[0].Message == msg {
			continue
		}
		r.log.Error("cannot read config file; keeping its last good version", "file", p, "err", err)
		st.readErr = true
		st.errs = []model.ConfigError{{Registry: RegistryName, Location: p, Message: msg}}
		r.dirty = true
	}
}

// forgetUnder drops the files at or under path that are not in keep.
func (r *Registry) forgetUnder(path string, keep map[string]bool) {
	prefix := path + string(filepath.Separator)
	for p := range r.files {
		if (p == path || strings.HasPrefix(p, prefix)) && !keep[p] {
			r.log.Info("config file removed", "file", p)
			delete(r.files, p)
			r.dirty = true
		}
	}
}

// load reads and parses one file if its content changed. A large file is
// parsed off the watch loop (after the initial load), so it does not hold
// back other files' changes; its result comes back on r.parsed.
func (r *Registry) load(path string) {
	st := r.files[path]
	data, err := r.read(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			r.forgetUnder(path, nil)
			return
		}
		if st == nil {
			st = &fileState{}
			r.files[path] = st
		}
		msg := fmt.Sprintf("cannot read file: %v", err)
		var tl *tooLargeError
		if errors.As(err, &tl) {
			msg = tl.Error()
		}
		if st.readErr && len(st.errs) == 1 && st.errs[0].Message == msg {
			return
		}
		r.dirty = true
		st.readErr = true
		st.parsing = 0
		st.errs = []model.ConfigError{{Registry: RegistryName, Location: path, Message: msg}}
		r.log.Error("cannot read config file; keeping its last good version", "file", path, "err", msg)
		return
	}
	h := model.HashBytes(data)
	if st != nil && !st.readErr && st.hash == h && st.parsing == 0 {
		return // unchanged
	}
	if st == nil {
		st = &fileState{}
		r.files[path] = st
	}
	if st.docs == nil {
		st.docs = config.DocCache{}
	}
	if r.async && len(data) >= asyncParseSize {
		r.parseGen++
		st.parsing = r.parseGen
		gen, prev := st.parsing, st.docs
		go func() {
			res, docs := config.ParseCached(path, data, prev)
			select {
			case r.parsed <- parsedFile{path: path, gen: gen, hash: h, res: res, docs: docs}:
			case <-r.ctx.Done():
			}
		}()
		return
	}
	st.parsing = 0
	res, docs := config.ParseCached(path, data, st.docs)
	r.install(path, st, h, res, docs)
}

// tooLargeError refuses a file over the size limit.
type tooLargeError struct {
	size, limit int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("file is %d bytes, over the limit of %d (--max-config-file-size); not read", e.size, e.limit)
}

// read reads a file of at most r.maxFileSize bytes.
func (r *Registry) read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && r.maxFileSize > 0 && info.Size() > r.maxFileSize {
		return nil, &tooLargeError{size: info.Size(), limit: r.maxFileSize}
	}
	// The file may grow after Stat: never read past the limit.
	limit := r.maxFileSize
	if limit <= 0 {
		limit = math.MaxInt64 - 1
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &tooLargeError{size: int64(len(data)), limit: limit}
	}
	return data, nil
}

// install records the parse of a file's content.
func (r *Registry) install(path string, st *fileState, h uint64, res *config.Result, docs config.DocCache) {
	r.dirty = true
	st.docs = docs
	for i := range res.Errors {
		res.Errors[i].Registry = RegistryName
	}
	st.hash = h
	st.readErr = false
	st.errs = res.Errors
	if res.Valid() {
		st.good = res
		r.log.Info("config file loaded", "file", path, "objects", len(res.Objects))
		r.logErrors(path, res.Errors)
		return
	}
	if st.good != nil {
		r.log.Error("config file rejected, keeping its previous version", "file", path)
	} else {
		r.log.Error("config file rejected", "file", path)
	}
	r.logErrors(path, res.Errors)
}

// logErrors logs the errors of one file, one line each.
func (r *Registry) logErrors(file string, errs []model.ConfigError) {
	for _, e := range errs {
		level, msg := slog.LevelError, "invalid config"
		if e.Warning {
			level, msg = slog.LevelWarn, "config warning"
		}
		r.log.Log(context.Background(), level, msg, "file", file, "location", e.Location,
			"object", e.Object, "field", e.Field, "error", e.Message)
	}
}

// fileErrors is what the snapshot reports for one file: the errors of its
// content, a note when an older version is served instead, and the set-level
// errors of the objects being served.
func fileErrors(path string, st *fileState, out *config.Output) []model.ConfigError {
	var errs []model.ConfigError
	if hasError(st.errs) {
		msg := "file rejected; none of its objects are served"
		if st.good != nil {
			msg = "file rejected; its previous valid version is still served"
		}
		// A summary: the causes below are what is counted.
		errs = append(errs, model.ConfigError{Registry: RegistryName, Location: path, Message: msg, Summary: true})
	}
	errs = append(errs, st.errs...)
	return append(errs, out.ErrorsFor(path)...)
}

func hasError(errs []model.ConfigError) bool {
	for _, e := range errs {
		if !e.Warning {
			return true
		}
	}
	return false
}

// apply rebuilds the registry's contribution from the last good version of
// every file and writes the difference to the shard in one transaction.
func (r *Registry) apply() {
	r.dirty = false
	paths := make([]string, 0, len(r.files))
	for p := range r.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var good []*config.Result
	for _, p := range paths {
		if g := r.files[p].good; g != nil {
			good = append(good, g)
		}
	}
	out := config.Build(RegistryName, good)

	errs := map[string][]model.ConfigError{}
	if r.gone {
		errs[r.dir] = []model.ConfigError{r.goneError()}
	}
	for _, p := range paths {
		if e := fileErrors(p, r.files[p], out); len(e) > 0 {
			errs[p] = e
		}
	}
	for p, e := range errs {
		if old := r.reported[p]; !slices.Equal(old, e) {
			// Parse errors were logged when the file was read; log the
			// set-level ones, which can change without the file changing.
			r.logErrors(p, model.NewErrors(out.ErrorsFor(p), old))
		}
	}

	r.shard.Update(func(tx *model.Txn) {
		services := map[model.ServiceKey]bool{}
		for _, svc := range out.Services {
			services[model.ServiceKey{Namespace: svc.Namespace, Hostname: svc.Hostname}] = true
			tx.SetService(svc)
		}
		for _, k := range tx.Services() {
			if !services[k] {
				tx.DeleteService(k)
			}
		}
		for k, eps := range out.Endpoints {
			tx.SetEndpoints(k, eps)
		}
		for _, k := range tx.EndpointKeys() {
			if _, ok := out.Endpoints[k]; !ok {
				tx.SetEndpoints(k, nil)
			}
		}
		configs := map[model.ConfigKey]bool{}
		for _, c := range out.Configs {
			configs[c.Key] = true
			tx.SetConfig(c)
		}
		for _, k := range tx.Configs() {
			if !configs[k] {
				tx.DeleteConfig(k)
			}
		}
		// SetErrors always records an event, so call it only on change.
		for p, e := range errs {
			if !slices.Equal(r.reported[p], e) {
				tx.SetErrors(p, e)
			}
		}
		for p := range r.reported {
			if _, ok := errs[p]; !ok {
				tx.SetErrors(p, nil)
			}
		}
	})
	r.reported = errs
}
