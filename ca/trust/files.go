package trust

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"

	"github.com/sextant-mesh/sextant/internal/filestamp"
)

// File names in --ca-dir, as Istio names them.
const (
	CACertFile    = "ca-cert.pem"
	CAKeyFile     = "ca-key.pem"
	CertChainFile = "cert-chain.pem"
	RootCertFile  = "root-cert.pem"
)

// readOptional returns a file's content, or nil when it does not exist.
func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// readCerts reads a PEM bundle of at least one certificate.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseCerts(path, b)
}

func parseCerts(path string, b []byte) ([]*x509.Certificate, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%s: empty, want PEM certificates", path)
	}
	certs, err := pemutil.ParseCertificateBundle(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// readOneCert reads a PEM file holding exactly one certificate.
func readOneCert(path string) (*x509.Certificate, error) {
	certs, err := readCerts(path)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s: holds %d certificates, want exactly one", path, len(certs))
	}
	return certs[0], nil
}

// readKey reads a PEM private key (PKCS#1, SEC 1 or PKCS#8) and checks it
// belongs to cert, read from certPath.
func readKey(path string, cert *x509.Certificate, certPath string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := pemutil.ParseKey(b, pemutil.WithFilename(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: holds a %T, want a private key", path, k)
	}
	if err := keyutil.VerifyPair(cert.PublicKey, signer); err != nil {
		return nil, fmt.Errorf("%s: private key does not match the public key of %s (%s)", path, filepath.Base(certPath), describe(cert))
	}
	return signer, nil
}

// describe names a certificate in error messages.
func describe(c *x509.Certificate) string {
	return fmt.Sprintf("subject %q, serial %s", c.Subject.String(), c.SerialNumber.Text(16))
}

// checkValidity reports a certificate that is expired or not yet valid.
func checkValidity(path string, c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("%s: certificate (%s) expired at %s", path, describe(c), c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%s: certificate (%s) is not valid before %s", path, describe(c), c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkCA reports a certificate that may not sign certificates.
func checkCA(path string, c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("%s: certificate (%s) is not a CA (basicConstraints CA:TRUE missing)", path, describe(c))
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s: certificate (%s) may not sign certificates (keyUsage lacks keyCertSign)", path, describe(c))
	}
	return nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func encodeKey(k crypto.Signer) ([]byte, error) {
	block, err := pemutil.Serialize(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(block), nil
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, synced, then renamed over it, so readers and restarts never see
// half a file.
func writeAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// stampOf stamps a plugged-in file for reload detection; a file that
// cannot be stat'ed has the zero stamp.
func stampOf(path string) filestamp.Stamp {
	st, _ := filestamp.Of(path)
	return st
}
