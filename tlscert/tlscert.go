// Package tlscert serves a TLS certificate from PEM files and picks up a
// renewed pair without a restart.
//
// Certificates on a public domain (KooGallery requires HTTPS) are renewed
// every few months by tools such as certbot or cert-manager, which rewrite the
// files in place or swap a symbolic link. A Reloader reads both files again
// at most once per CheckEvery, when a handshake or the expiry metric asks for
// the certificate, and swaps in the new pair once both files parse and
// match. A half-written renewal (the certificate replaced, its key not yet)
// keeps the pair in use and is tried again at the next check.
package tlscert

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/soukhq/souk/clock"
)

// CheckEvery is how often, at most, the files are read again.
const CheckEvery = 10 * time.Second

// Reloader holds the pair in use. Its GetCertificate goes in a
// tls.Config.
type Reloader struct {
	certFile, keyFile string
	clock             clock.Clock
	log               *slog.Logger

	mu              sync.Mutex
	cert            *tls.Certificate
	certPEM, keyPEM []byte    // what cert was made of
	checked         time.Time // last read of the files
	failing         [32]byte  // hash of the error and files of the last pair refused, not to log it again
}

// New loads the pair, which must be valid: a server that cannot serve its
// certificate must not start. A nil clock is the real clock; a nil logger
// discards.
func New(certFile, keyFile string, c clock.Clock, log *slog.Logger) (*Reloader, error) {
	if c == nil {
		c = clock.Real{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, clock: c, log: log}
	certPEM, keyPEM, cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cert, r.certPEM, r.keyPEM, r.checked = cert, certPEM, keyPEM, c.Now()
	r.logLoaded("TLS certificate loaded", cert)
	return r, nil
}

// load reads and parses both files.
func (r *Reloader) load() (certPEM, keyPEM []byte, cert *tls.Certificate, err error) {
	if certPEM, err = os.ReadFile(r.certFile); err != nil {
		return nil, nil, nil, fmt.Errorf("tls certificate: %w", err)
	}
	if keyPEM, err = os.ReadFile(r.keyFile); err != nil {
		return nil, nil, nil, fmt.Errorf("tls key: %w", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return certPEM, keyPEM, nil, fmt.Errorf("tls certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return certPEM, keyPEM, nil, fmt.Errorf("tls certificate %s: %w", r.certFile, err)
		}
	}
	return certPEM, keyPEM, &c, nil
}

func (r *Reloader) logLoaded(msg string, c *tls.Certificate) {
	l := c.Leaf
	attrs := []any{"file", r.certFile, "subject", l.Subject.String(), "dnsNames", l.DNSNames, "notAfter", l.NotAfter.UTC()}
	switch now := r.clock.Now(); {
	case now.After(l.NotAfter):
		r.log.Warn(msg+": it has expired", attrs...)
	case l.NotAfter.Sub(now) < 14*24*time.Hour:
		r.log.Warn(msg+": it expires within 14 days", attrs...)
	default:
		r.log.Info(msg, attrs...)
	}
}

// Certificate is the pair in use, read again from the files when the last
// read is CheckEvery old.
func (r *Reloader) Certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	if now.Sub(r.checked) < CheckEvery && !now.Before(r.checked) {
		return r.cert
	}
	r.checked = now
	certPEM, keyPEM, cert, err := r.load()
	if err == nil && bytes.Equal(certPEM, r.certPEM) && bytes.Equal(keyPEM, r.keyPEM) {
		return r.cert // unchanged
	}
	if err != nil {
		// Logged once per failure: a renewal half-way through, or a
		// broken one, until the files change again.
		if f := sha256.Sum256([]byte(err.Error() + "\x00" + string(certPEM) + "\x00" + string(keyPEM))); f != r.failing {
			r.log.Warn("TLS certificate files changed but cannot be used; serving the certificate loaded before", "err", err,
				"notAfter", r.cert.Leaf.NotAfter.UTC())
			r.failing = f
		}
		return r.cert
	}
	r.cert, r.certPEM, r.keyPEM, r.failing = cert, certPEM, keyPEM, [32]byte{}
	r.logLoaded("TLS certificate reloaded", cert)
	return r.cert
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := r.Certificate()
	if c == nil {
		return nil, errors.New("tlscert: no certificate")
	}
	return c, nil
}

// NotAfter is the expiry of the certificate in use (for a metric).
func (r *Reloader) NotAfter() time.Time { return r.Certificate().Leaf.NotAfter }
