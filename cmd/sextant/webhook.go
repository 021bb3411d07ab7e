package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/spf13/pflag"

	"github.com/sextant-mesh/sextant/webhook"
)

// webhookOptions configure the validating admission webhook's HTTPS port.
type webhookOptions struct {
	addr     string
	certFile string
	keyFile  string
}

// addWebhookFlags registers the webhook flags on f.
func addWebhookFlags(f *pflag.FlagSet) *webhookOptions {
	o := &webhookOptions{}
	f.StringVar(&o.addr, "webhook-addr", ":15017",
		"HTTPS address of the validating admission webhook ("+webhook.Path+"); empty disables it")
	f.StringVar(&o.certFile, "webhook-cert", "",
		"PEM certificate for the webhook port, re-read when it changes (default: a certificate from the CA, if --ca-dir is set)")
	f.StringVar(&o.keyFile, "webhook-key", "", "PEM private key of --webhook-cert")
	return o
}

// server prepares the webhook's HTTPS server for h: it listens at once (so
// a taken port fails start-up) and returns run, which serves until its
// context is done. The certificate comes from --webhook-cert/--webhook-key
// when given, else from getCert (the CA); with neither, or with an empty
// --webhook-addr, the webhook is not served and run is nil.
func (o *webhookOptions) server(h http.Handler, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), log *slog.Logger) (run func(context.Context) error, err error) {
	if log == nil {
		log = slog.Default()
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return nil, errors.New("--webhook-cert and --webhook-key must be given together")
	}
	if o.addr == "" {
		log.Info("validating webhook disabled (--webhook-addr is empty)")
		return nil, nil
	}
	source := "ca"
	if o.certFile != "" {
		files, err := webhook.LoadCertFiles(o.certFile, o.keyFile, log)
		if err != nil {
			return nil, fmt.Errorf("--webhook-cert/--webhook-key: %w", err)
		}
		getCert, source = files.GetCertificate, "files"
	}
	if getCert == nil {
		log.Info("validating webhook not served: no --webhook-cert and no CA to issue one", "webhook-addr", o.addr)
		return nil, nil
	}
	srv, err := webhook.Listen(o.addr, h, getCert, log)
	if err != nil {
		return nil, fmt.Errorf("--webhook-addr: %w", err)
	}
	log.Info("validating webhook listening", "addr", srv.Addr().String(), "certificate", source)
	return srv.Run, nil
}
