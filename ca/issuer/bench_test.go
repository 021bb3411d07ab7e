package issuer_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"

	"github.com/sextant-mesh/sextant/ca/catest"
	"github.com/sextant-mesh/sextant/ca/issuer"
	"github.com/sextant-mesh/sextant/ca/trust"
)

// BenchmarkSign signs an istio-agent-like CSR (ECDSA P-256 key) with a
// P-256 and an RSA-2048 CA, serially and from all cores; csr/s is the
// throughput.
//
//	go test -run '^$' -bench BenchmarkSign -benchtime 3s ./ca/issuer/
func BenchmarkSign(b *testing.B) {
	for _, kt := range []trust.KeyType{trust.ECDSAP256, trust.RSA2048} {
		iss := newIssuer(b, kt, issuer.Options{})
		csr := catest.CSR(b, catest.NewKey(b, catest.EC256), "")
		b.Run(fmt.Sprintf("ca=%s/serial", kt), func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				if _, err := iss.Sign(ctx, csr, alice, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "csr/s")
		})
		b.Run(fmt.Sprintf("ca=%s/parallel", kt), func(b *testing.B) {
			ctx := context.Background()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := iss.Sign(ctx, csr, alice, 0); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "csr/s")
		})
	}
}

// BenchmarkLeafBuild compares building the leaf template as a typed
// x509util.Certificate (what Sign does) with executing step's JSON
// DefaultLeafTemplate, which re-parses the template with the sprig
// function map on every call. Signing is excluded.
func BenchmarkLeafBuild(b *testing.B) {
	req, err := pemutil.ParseCertificateRequest(catest.CSR(b, catest.NewKey(b, catest.EC256), ""))
	if err != nil {
		b.Fatal(err)
	}
	uri := alice.URL()
	b.Run("struct", func(b *testing.B) {
		for b.Loop() {
			c := &x509util.Certificate{URIs: x509util.MultiURL{uri}, KeyUsage: x509util.KeyUsage(x509.KeyUsageDigitalSignature),
				ExtKeyUsage: x509util.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, PublicKey: req.PublicKey}
			_ = c.GetCertificate()
		}
	})
	b.Run("step-template", func(b *testing.B) {
		for b.Loop() {
			data := x509util.CreateTemplateData("", []string{uri.String()})
			c, err := x509util.NewCertificate(req, x509util.WithTemplate(x509util.DefaultLeafTemplate, data))
			if err != nil {
				b.Fatal(err)
			}
			_ = c.GetCertificate()
		}
	})
}
