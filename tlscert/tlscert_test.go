package tlscert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// pair is a self-signed certificate for 127.0.0.1 and its key, in PEM.
type pair struct {
	cert, key []byte
	x509      *x509.Certificate
}

func newPair(t *testing.T, serial int64, notAfter time.Time) pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "souk.example.com"},
		DNSNames: []string{"souk.example.com"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: t0.Add(-24 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return pair{cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), x509: c}
}

type files struct{ cert, key string }

func (f files) write(t *testing.T, cert, key []byte) {
	t.Helper()
	if cert != nil {
		if err := os.WriteFile(f.cert, cert, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if key != nil {
		if err := os.WriteFile(f.key, key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func serial(t *testing.T, r *Reloader) int64 {
	t.Helper()
	c, err := r.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.Int64()
}

func TestReloadSequence(t *testing.T) {
	dir := t.TempDir()
	f := files{filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	year := t0.Add(365 * 24 * time.Hour)
	a, b, c := newPair(t, 1, year), newPair(t, 2, year), newPair(t, 3, year)
	f.write(t, a.cert, a.key)
	vc := clock.NewVirtual(t0)
	var logs bytes.Buffer
	r, err := New(f.cert, f.key, vc, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := serial(t, r); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	if !strings.Contains(logs.String(), `level=INFO msg="TLS certificate loaded"`) {
		t.Errorf("no load line:\n%s", logs.String())
	}
	warnings := func() int { return strings.Count(logs.String(), "level=WARN") }

	steps := []struct {
		name       string
		cert, key  []byte
		remove     bool
		advance    time.Duration
		want       int64
		wantWarns  int
		wantReload bool
	}{
		{name: "renewed, not yet due", cert: b.cert, key: b.key, advance: 5 * time.Second, want: 1},
		{name: "renewed, due", advance: 5 * time.Second, want: 2, wantReload: true},
		{name: "certificate replaced, key not yet", cert: c.cert, advance: CheckEvery, want: 2, wantWarns: 1},
		{name: "still half-way: not logged again", advance: CheckEvery, want: 2, wantWarns: 1},
		{name: "key follows", key: c.key, advance: CheckEvery, want: 3, wantWarns: 1, wantReload: true},
		{name: "unchanged", advance: CheckEvery, want: 3, wantWarns: 1},
		{name: "files removed", remove: true, advance: CheckEvery, want: 3, wantWarns: 2},
		{name: "still removed: not logged again", advance: CheckEvery, want: 3, wantWarns: 2},
		{name: "clock set back: read again", cert: a.cert, key: a.key, advance: -time.Hour, want: 1, wantWarns: 2, wantReload: true},
	}
	for _, s := range steps {
		before := strings.Count(logs.String(), "TLS certificate reloaded")
		if s.remove {
			_ = os.Remove(f.cert)
			_ = os.Remove(f.key)
		}
		f.write(t, s.cert, s.key)
		vc.Advance(s.advance)
		if got := serial(t, r); got != s.want {
			t.Fatalf("%s: serial %d, want %d\n%s", s.name, got, s.want, logs.String())
		}
		if got := warnings(); got != s.wantWarns {
			t.Fatalf("%s: %d warnings, want %d\n%s", s.name, got, s.wantWarns, logs.String())
		}
		if reloaded := strings.Count(logs.String(), "TLS certificate reloaded") > before; reloaded != s.wantReload {
			t.Fatalf("%s: reload logged %v, want %v", s.name, reloaded, s.wantReload)
		}
	}
	if got := r.NotAfter(); !got.Equal(year) {
		t.Errorf("NotAfter %v, want %v", got, year)
	}
}

func TestNewRefusesABadPair(t *testing.T) {
	dir := t.TempDir()
	f := files{filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	a, b := newPair(t, 1, t0.Add(time.Hour)), newPair(t, 2, t0.Add(time.Hour))
	if _, err := New(f.cert, f.key, clock.NewVirtual(t0), nil); err == nil || !strings.Contains(err.Error(), "tls certificate") {
		t.Errorf("missing files: %v", err)
	}
	f.write(t, a.cert, b.key)
	if _, err := New(f.cert, f.key, clock.NewVirtual(t0), nil); err == nil || !strings.Contains(err.Error(), "private key does not match") {
		t.Errorf("mismatched key: %v", err)
	}
	f.write(t, a.cert, []byte("not a key"))
	if _, err := New(f.cert, f.key, clock.NewVirtual(t0), nil); err == nil {
		t.Error("garbage key accepted")
	}
}

func TestExpiryWarnings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		notAfter time.Time
		want     string
	}{
		{"fine", t0.Add(90 * 24 * time.Hour), `level=INFO msg="TLS certificate loaded"`},
		{"soon", t0.Add(13 * 24 * time.Hour), `level=WARN msg="TLS certificate loaded: it expires within 14 days"`},
		{"expired", t0.Add(-time.Hour), `level=WARN msg="TLS certificate loaded: it has expired"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := files{filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
			p := newPair(t, 1, tc.notAfter)
			f.write(t, p.cert, p.key)
			var logs bytes.Buffer
			if _, err := New(f.cert, f.key, clock.NewVirtual(t0), slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), tc.want) {
				t.Errorf("log lacks %q:\n%s", tc.want, logs.String())
			}
		})
	}
}

// A TLS server whose certificate is renewed serves the new one to the next
// connection, without a restart.
func TestServerPicksUpRenewal(t *testing.T) {
	dir := t.TempDir()
	f := files{filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	now := time.Now()
	a, b := newPair(t, 1, now.Add(time.Hour)), newPair(t, 2, now.Add(time.Hour))
	f.write(t, a.cert, a.key)
	vc := clock.NewVirtual(now)
	r, err := New(f.cert, f.key, vc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }),
		TLSConfig: &tls.Config{GetCertificate: r.GetCertificate}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()
	url := "https://" + ln.Addr().String()
	pool := x509.NewCertPool()
	pool.AddCert(a.x509)
	pool.AddCert(b.x509)
	served := func() int64 {
		t.Helper()
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := served(); got != 1 {
		t.Fatalf("served serial %d, want 1", got)
	}
	f.write(t, b.cert, b.key)
	vc.Advance(CheckEvery)
	if got := served(); got != 2 {
		t.Fatalf("after renewal: served serial %d, want 2", got)
	}
}
