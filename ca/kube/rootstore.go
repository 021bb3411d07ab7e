package kube

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/sextant-mesh/sextant/ca/trust"
)

// Secret names and keys, as Istio's (security/pkg/pki/ca/ca.go).
const (
	// PluggedSecret holds an operator's CA (Istio's cacerts).
	PluggedSecret = "cacerts"
	// SelfSignedSecret holds the self-signed root and its key.
	SelfSignedSecret = "istio-ca-secret"
	// The kubernetes.io/tls layout cacerts may use instead.
	tlsCert = "tls.crt"
	tlsKey  = "tls.key"
	tlsCA   = "ca.crt"
)

// Mode says where the CA material came from.
type Mode string

// Modes.
const (
	ModePlugged    Mode = "plugged-in (" + PluggedSecret + ")"
	ModeSelfSigned Mode = "self-signed (" + SelfSignedSecret + ")"
)

// RootOptions configure Bootstrap.
type RootOptions struct {
	Client kubernetes.Interface
	// Namespace holds the Secrets and the Lease (default istio-system).
	Namespace string
	// Dir is the CA directory ca/trust owns (--ca-dir); in a pod, an
	// emptyDir. Bootstrap fills it from the Secrets.
	Dir string
	// Identity names this replica in the Lease (the pod name).
	Identity string
	// Open opens the trust store on Dir; the elected replica calls it to
	// generate a root when there is none. Use the same options as for the
	// store the server runs on.
	Open func(dir string) (*trust.Store, error)
	// PollInterval is how often Bootstrap checks for a root another
	// replica created, and SecretSync for Secret changes (default 2s and
	// 30s).
	PollInterval time.Duration
	Logger       *slog.Logger
	// Election tunes the leader election (Client, Namespace, Lease and
	// Identity are filled in).
	Election Election
}

func (o *RootOptions) defaults() error {
	if o.Client == nil {
		return errors.New("ca/kube: no Kubernetes client")
	}
	if o.Dir == "" {
		return errors.New("ca/kube: no CA directory")
	}
	if o.Namespace == "" {
		o.Namespace = "istio-system"
	}
	if o.Identity == "" {
		h, _ := os.Hostname()
		o.Identity = h
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Open == nil {
		o.Open = func(dir string) (*trust.Store, error) { return trust.Open(dir, trust.Options{Logger: o.Logger}) }
	}
	return nil
}

// Bootstrap fills o.Dir with the CA material kept in the cluster, before
// the server opens its trust.Store on the directory:
//
//   - a "cacerts" Secret (ca-cert.pem, ca-key.pem, cert-chain.pem,
//     root-cert.pem, or tls.crt, tls.key, ca.crt) is a plugged-in CA;
//   - else "istio-ca-secret" (ca-cert.pem, ca-key.pem) is the self-signed
//     root;
//   - else the replica that wins the Lease generates a root and stores it
//     in istio-ca-secret, and every other replica waits for that Secret and
//     loads it.
//
// It returns a SecretSync to run alongside the store.
func Bootstrap(ctx context.Context, o RootOptions) (*SecretSync, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("CA directory: %w", err)
	}
	log := o.Logger.With("namespace", o.Namespace)
	for {
		mode, err := loadFromSecrets(ctx, o)
		if err != nil {
			return nil, err
		}
		if mode != "" {
			log.Info("CA material loaded from the cluster", "mode", string(mode), "dir", o.Dir)
			return &SecretSync{o: o, mode: mode, log: log}, nil
		}
		created, err := createAsLeader(ctx, o, log)
		if err != nil {
			return nil, err
		}
		if created {
			log.Info("generated the mesh's self-signed root", "secret", o.Namespace+"/"+SelfSignedSecret)
			return &SecretSync{o: o, mode: ModeSelfSigned, log: log}, nil
		}
		// Another replica created it (or is creating it): load it.
	}
}

// loadFromSecrets writes the cluster's CA Secrets into o.Dir; "" means
// there is none.
func loadFromSecrets(ctx context.Context, o RootOptions) (Mode, error) {
	secrets := o.Client.CoreV1().Secrets(o.Namespace)
	s, err := secrets.Get(ctx, PluggedSecret, metav1.GetOptions{})
	switch {
	case err == nil:
		if err := writePlugged(o.Dir, s); err != nil {
			return "", err
		}
		return ModePlugged, nil
	case !apierrors.IsNotFound(err):
		return "", fmt.Errorf("read Secret %s/%s: %w", o.Namespace, PluggedSecret, err)
	}
	s, err = secrets.Get(ctx, SelfSignedSecret, metav1.GetOptions{})
	switch {
	case err == nil:
		if err := writeSelfSigned(o.Dir, s); err != nil {
			return "", err
		}
		return ModeSelfSigned, nil
	case !apierrors.IsNotFound(err):
		return "", fmt.Errorf("read Secret %s/%s: %w", o.Namespace, SelfSignedSecret, err)
	}
	return "", nil
}

// pluggedFiles maps cacerts keys to the files ca/trust reads.
func pluggedFiles(s *corev1.Secret) (map[string][]byte, error) {
	d := s.Data
	if len(d[trust.CACertFile]) > 0 {
		out := map[string][]byte{}
		for _, k := range []string{trust.CACertFile, trust.CAKeyFile, trust.CertChainFile, trust.RootCertFile} {
			if len(d[k]) == 0 {
				return nil, fmt.Errorf("secret %s/%s: key %s is missing or empty (Istio's cacerts layout needs %s, %s, %s and %s)",
					s.Namespace, s.Name, k, trust.CACertFile, trust.CAKeyFile, trust.CertChainFile, trust.RootCertFile)
			}
			out[k] = d[k]
		}
		return out, nil
	}
	if len(d[tlsCert]) > 0 && len(d[tlsKey]) > 0 && len(d[tlsCA]) > 0 {
		return map[string][]byte{
			trust.CACertFile:    firstPEM(d[tlsCert]),
			trust.CAKeyFile:     d[tlsKey],
			trust.CertChainFile: d[tlsCert],
			trust.RootCertFile:  d[tlsCA],
		}, nil
	}
	return nil, fmt.Errorf("secret %s/%s has neither Istio's cacerts keys (%s, …) nor %s, %s and %s",
		s.Namespace, s.Name, trust.CACertFile, tlsCert, tlsKey, tlsCA)
}

// firstPEM returns the first PEM block of b (the leaf of a tls.crt chain).
func firstPEM(b []byte) []byte {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return b
	}
	return pem.EncodeToMemory(blk)
}

func writePlugged(dir string, s *corev1.Secret) error {
	files, err := pluggedFiles(s)
	if err != nil {
		return err
	}
	for name, data := range files {
		if err := writeFile(filepath.Join(dir, name), data, name == trust.CAKeyFile); err != nil {
			return err
		}
	}
	return nil
}

func writeSelfSigned(dir string, s *corev1.Secret) error {
	cert, key := s.Data[trust.CACertFile], s.Data[trust.CAKeyFile]
	if len(cert) == 0 || len(key) == 0 {
		return fmt.Errorf("secret %s/%s: %s and %s are required", s.Namespace, s.Name, trust.CACertFile, trust.CAKeyFile)
	}
	// A cert-chain.pem would make ca/trust treat the directory as a
	// plugged-in CA.
	if err := os.Remove(filepath.Join(dir, trust.CertChainFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("CA directory: %w", err)
	}
	if err := writeFile(filepath.Join(dir, trust.CACertFile), cert, false); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, trust.CAKeyFile), key, true); err != nil {
		return err
	}
	roots := s.Data[trust.RootCertFile]
	if len(bytes.TrimSpace(roots)) == 0 {
		roots = cert
	}
	return writeFile(filepath.Join(dir, trust.RootCertFile), roots, false)
}

// writeFile replaces path atomically unless it already holds data.
func writeFile(path string, data []byte, secret bool) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	perm := os.FileMode(0o644)
	if secret {
		perm = 0o600
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// createAsLeader campaigns for the root Lease; the winner generates the
// root and creates istio-ca-secret. It returns when the Secret exists,
// created=true when this replica created it.
func createAsLeader(ctx context.Context, o RootOptions, log *slog.Logger) (created bool, err error) {
	e := o.Election
	e.Client, e.Namespace, e.Lease, e.Identity = o.Client, o.Namespace, RootLease, o.Identity
	if e.Logger == nil {
		e.Logger = log
	}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		created bool
		err     error
	}
	done := make(chan result, 1)
	le, err := e.elector(func(lctx context.Context) {
		c, err := createRoot(lctx, o, log)
		done <- result{c, err}
		cancel() // release the lease
	})
	if err != nil {
		return false, err
	}
	elected := make(chan struct{})
	go func() {
		defer close(elected)
		le.Run(ectx)
	}()
	defer func() { <-elected }()
	poll := o.PollInterval
	if poll <= 0 {
		poll = 2 * time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case r := <-done:
			return r.created, r.err
		case <-t.C:
			_, err := o.Client.CoreV1().Secrets(o.Namespace).Get(ctx, SelfSignedSecret, metav1.GetOptions{})
			if err == nil {
				return false, nil
			}
			if !apierrors.IsNotFound(err) {
				log.Warn("cannot read the CA Secret; retrying", "err", err)
			}
		}
	}
}

// createRoot runs on the leader: unless a root appeared meanwhile, it
// generates one in o.Dir and stores it in istio-ca-secret.
func createRoot(ctx context.Context, o RootOptions, log *slog.Logger) (bool, error) {
	if mode, err := loadFromSecrets(ctx, o); err != nil || mode != "" {
		return false, err
	}
	for _, f := range []string{trust.CACertFile, trust.CAKeyFile, trust.CertChainFile, trust.RootCertFile} {
		if err := os.Remove(filepath.Join(o.Dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("CA directory: %w", err)
		}
	}
	if _, err := o.Open(o.Dir); err != nil {
		return false, fmt.Errorf("generate the root: %w", err)
	}
	data := map[string][]byte{}
	for _, f := range []string{trust.CACertFile, trust.CAKeyFile, trust.RootCertFile} {
		b, err := os.ReadFile(filepath.Join(o.Dir, f))
		if err != nil {
			return false, fmt.Errorf("read the generated root: %w", err)
		}
		data[f] = b
	}
	// Istio's istio-ca-secret also carries empty chain and root keys.
	data[trust.CertChainFile] = nil
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SelfSignedSecret, Namespace: o.Namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "sextant"}},
		Type: "istio.io/ca-root",
		Data: data,
	}
	_, err := o.Client.CoreV1().Secrets(o.Namespace).Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		log.Info("another replica stored a root first; loading it")
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create Secret %s/%s: %w", o.Namespace, SelfSignedSecret, err)
	}
	return true, nil
}

// SecretSync keeps the CA Secrets and the trust store's directory in step
// after Bootstrap.
type SecretSync struct {
	o    RootOptions
	mode Mode
	log  *slog.Logger
}

// Mode is where the material came from.
func (s *SecretSync) Mode() Mode { return s.mode }

// Run follows changes until ctx ends:
//
//   - plugged-in: a changed cacerts Secret is written to the directory and
//     the store reloads it at once (ca/trust validates it first and keeps
//     the old material when the new set is invalid);
//   - self-signed: when the store renews the root (same key), the new root
//     and bundle are written back to istio-ca-secret, unless the Secret
//     already holds a root that expires later.
func (s *SecretSync) Run(ctx context.Context, store *trust.Store) error {
	changed, cancel := store.Watch()
	defer cancel()
	poll := s.o.PollInterval
	if poll <= 0 {
		poll = 30 * time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			if s.mode == ModeSelfSigned {
				if err := s.writeBack(ctx, store.Current()); err != nil {
					s.log.Error("cannot store the renewed root in its Secret; retrying at the next change", "err", err)
				}
			}
		case <-t.C:
			if s.mode == ModePlugged {
				s.reloadPlugged(ctx, store)
			}
		}
	}
}

func (s *SecretSync) reloadPlugged(ctx context.Context, store *trust.Store) {
	sec, err := s.o.Client.CoreV1().Secrets(s.o.Namespace).Get(ctx, PluggedSecret, metav1.GetOptions{})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("cannot read the plugged-in CA Secret; keeping the current CA", "err", err)
		}
		return
	}
	if err := writePlugged(s.o.Dir, sec); err != nil {
		s.log.Error("invalid plugged-in CA Secret; keeping the current CA", "err", err)
		return
	}
	if changed, err := store.Check(); err != nil {
		s.log.Error("plugged-in CA reload failed; keeping the current CA", "err", err)
	} else if changed {
		s.log.Info("plugged-in CA reloaded from its Secret")
	}
}

func (s *SecretSync) writeBack(ctx context.Context, m *trust.Material) error {
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.Cert.Raw})
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		secrets := s.o.Client.CoreV1().Secrets(s.o.Namespace)
		sec, err := secrets.Get(ctx, SelfSignedSecret, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read Secret %s/%s: %w", s.o.Namespace, SelfSignedSecret, err)
		}
		if old, err := parseCert(sec.Data[trust.CACertFile]); err == nil && !old.NotAfter.Before(m.Cert.NotAfter) {
			return nil // as new or newer already
		}
		sec = sec.DeepCopy()
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		sec.Data[trust.CACertFile] = certPEM
		sec.Data[trust.RootCertFile] = m.RootsPEM()
		if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			return err
		}
		s.log.Info("renewed root stored", "secret", s.o.Namespace+"/"+SelfSignedSecret, "not-after", m.Cert.NotAfter.UTC().Format(time.RFC3339))
		return nil
	})
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
