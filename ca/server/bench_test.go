package server_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	pb "istio.io/api/security/v1alpha1"

	"github.com/sextant-mesh/sextant/ca/trust"
)

// BenchmarkCreateCertificateFixedRate sends b.N CreateCertificate calls
// over TLS on loopback, JWT-authenticated, open loop at a fixed rate
// (SEXTANT_CA_RATE per second, default 200), and reports latency
// percentiles measured from each call's scheduled start (no coordinated
// omission).
//
//	go test -run '^$' -bench FixedRate -benchtime 2000x ./ca/server/
func BenchmarkCreateCertificateFixedRate(b *testing.B) {
	perSec := 200.0
	if v, err := strconv.ParseFloat(os.Getenv("SEXTANT_CA_RATE"), 64); err == nil && v > 0 {
		perSec = v
	}
	for _, kt := range []trust.KeyType{trust.ECDSAP256, trust.RSA2048} {
		b.Run(fmt.Sprintf("ca=%s/rate=%v", kt, perSec), func(b *testing.B) {
			e := start(b, envOptions{keyType: kt})
			c := e.client(b, nil)
			tok := withToken(e.kube.KubeToken(b, "default", "bench"))
			req := &pb.IstioCertificateRequest{Csr: csr(b)}
			if _, err := c.CreateCertificate(context.Background(), req, tok); err != nil { // warm the connection
				b.Fatal(err)
			}
			interval := time.Duration(float64(time.Second) / perSec)
			lat := make([]time.Duration, b.N)
			var wg sync.WaitGroup
			b.ResetTimer()
			t0 := time.Now()
			for i := range b.N {
				at := t0.Add(time.Duration(i) * interval)
				time.Sleep(time.Until(at))
				wg.Go(func() {
					if _, err := c.CreateCertificate(context.Background(), req, tok); err != nil {
						b.Error(err)
					}
					lat[i] = time.Since(at)
				})
			}
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(q(1), "max-ms")
		})
	}
}
