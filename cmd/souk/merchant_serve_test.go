package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/merchant/kit"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// souk merchant over TLS, with the joint-operation kit and SSO mounted.
func TestMerchantTLSAndJointOperation(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	addr := freePort(t)
	a, _, errb := testApp(map[string]string{
		"SOUK_ACCESS_KEY": "k1", "SOUK_KIT_KEY": "kit-key-1", "SOUK_ADMIN_TOKEN": "adm",
		"SOUK_SSO_BASE_URL": "https://" + addr, "SOUK_IDENTITY_KEY": strings.Repeat("i", 32),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- runMerchant(ctx, a, []string{"--listen", addr, "--data", dir, "--tls-cert", certFile, "--tls-key", keyFile, "--log-format", "text"})
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit %d: %s", code, errb.String())
		}
	}()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var resp *http.Response
	var err error
	for i := 0; i < 100; i++ {
		if resp, err = client.Get("https://" + addr + "/healthz"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTPS healthz: %v %v\n%s", resp, err, errb.String())
	}
	resp.Body.Close()
	// The certificate's expiry is a metric.
	if resp, err = client.Get("https://" + addr + "/metrics"); err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var expiry float64
	for _, line := range strings.Split(string(metrics), "\n") {
		if v, ok := strings.CutPrefix(line, "souk_merchant_tls_cert_expiry_timestamp_seconds "); ok {
			expiry, _ = strconv.ParseFloat(v, 64)
		}
	}
	if now := float64(time.Now().Unix()); expiry < now || expiry > now+2*3600 {
		t.Errorf("souk_merchant_tls_cert_expiry_timestamp_seconds = %v, want the certificate's expiry, an hour from now", expiry)
	}
	// The kit interfaces answer under the production address (unsigned → 000001).
	resp, err = client.Post("https://"+addr+"/koogallery/produceAPI/v2/tenantSync", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var kr struct{ ResultCode string }
	_ = json.NewDecoder(resp.Body).Decode(&kr)
	resp.Body.Close()
	if kr.ResultCode != "000001" {
		t.Fatalf("kit tenantSync unsigned: %+v", kr)
	}
	// SSO is mounted.
	resp, err = client.Get("https://" + addr + "/sso/me")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		t.Fatal("/sso/me is not mounted")
	}
	// The basic interfaces still answer at the exact production address.
	resp, err = client.Post("https://"+addr+"/koogallery", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var br struct{ ResultCode string }
	_ = json.NewDecoder(resp.Body).Decode(&br)
	resp.Body.Close()
	if br.ResultCode != "000001" {
		t.Fatalf("basic interface unsigned: %+v", br)
	}
}

// A certificate and key that do not match stop the merchant before it
// listens, with the reason.
func TestMerchantTLSBadPair(t *testing.T) {
	dir := t.TempDir()
	certFile, _, _ := selfSigned(t, dir)
	other := t.TempDir()
	_, keyFile, _ := selfSigned(t, other)
	a, _, errb := testApp(map[string]string{"SOUK_ACCESS_KEY": "k1"})
	code := runMerchant(context.Background(), a, []string{"--listen", freePort(t), "--data", dir, "--tls-cert", certFile, "--tls-key", keyFile})
	if code != 2 || !strings.Contains(errb.String(), "private key does not match public key") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

func TestMerchantPublicKey(t *testing.T) {
	dir := t.TempDir()
	a, out, errb := testApp(nil)
	if code := runMerchant(context.Background(), a, []string{"public-key", "--data", dir}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	first := out.String()
	if !strings.Contains(errb.String(), "generated a new key pair in "+filepath.Join(dir, kit.KeyFile)) {
		t.Errorf("a first run does not say it generated the key pair: %q", errb.String())
	}
	a, out, errb = testApp(nil)
	runMerchant(context.Background(), a, []string{"public-key", "--data", dir})
	if first == "" || out.String() != first {
		t.Fatalf("public key not stable: %q vs %q", first, out.String())
	}
	if errb.Len() != 0 {
		t.Errorf("a second run says %q, want nothing", errb.String())
	}
}

// TestHelpWithoutToken: the seller-tools groups print their usage without the
// admin token; public-key -h describes its options.
func TestHelpWithoutToken(t *testing.T) {
	for _, args := range [][]string{{"debug", "-h"}, {"dialtests", "help"}, {"cases", "help"}, {"cases", "--help"}} {
		a, out, errb := testApp(nil)
		if code := runMarket(context.Background(), a, args); code != 0 || !strings.Contains(out.String(), "usage:") {
			t.Errorf("souk market %v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
	a, _, errb := testApp(nil)
	code := runMerchant(context.Background(), a, []string{"public-key", "-h"})
	for _, opt := range []string{"--data", "--db", "--kit-private-key", "--adopt"} {
		if code != 0 || !strings.Contains(errb.String(), opt) {
			t.Errorf("souk merchant public-key -h: exit %d, no %s: %s", code, opt, errb.String())
		}
	}
}

// Merchants sharing one database share the joint-operation key pair: a
// second one with a key of its own does not start; given the first one's key
// (SOUK_KIT_PRIVATE_KEY_FILE) it does; `public-key --adopt` makes another
// key the one.
func TestMerchantReplicasShareTheKitKey(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "shared.db")
	dirA, dirB := t.TempDir(), t.TempDir()
	// start runs a merchant until it answers /healthz (then stops it) or
	// exits; it tells which, with the merchant's stderr.
	start := func(dir string, env map[string]string) (started bool, stderr string) {
		t.Helper()
		env["SOUK_ACCESS_KEY"], env["SOUK_KIT_KEY"] = "k1", "kit-key-1"
		a, _, errb := testApp(env)
		addr := freePort(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan int, 1)
		go func() {
			done <- runMerchant(ctx, a, []string{"--listen", addr, "--data", dir, "--db", shared, "--log-format", "text"})
		}()
		for i := 0; i < 400; i++ {
			select {
			case code := <-done:
				return false, fmt.Sprintf("exit %d: %s", code, errb.String())
			default:
			}
			if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
				resp.Body.Close()
				cancel()
				if code := <-done; code != 0 {
					t.Fatalf("exit %d after start: %s", code, errb.String())
				}
				return true, errb.String()
			}
			time.Sleep(25 * time.Millisecond)
		}
		t.Fatalf("merchant neither started nor exited: %s", errb.String())
		return false, ""
	}
	if ok, out := start(dirA, map[string]string{}); !ok {
		t.Fatalf("first merchant: %s", out)
	}
	if ok, out := start(dirB, map[string]string{}); ok || !strings.Contains(out, "exit 2") || !strings.Contains(out, "is not the key recorded in its database") {
		t.Fatalf("second merchant with a key of its own: started %v: %s", ok, out)
	}
	if ok, out := start(dirB, map[string]string{"SOUK_KIT_PRIVATE_KEY_FILE": filepath.Join(dirA, "kit-rsa-key.pem")}); !ok {
		t.Fatalf("second merchant given the first one's key: %s", out)
	}
	// Adopt the second directory's key: it becomes the one.
	a, out, errb := testApp(nil)
	if code := runMerchant(context.Background(), a, []string{"public-key", "--data", dirB, "--db", shared, "--adopt"}); code != 0 || !strings.Contains(errb.String(), "replacing") {
		t.Fatalf("public-key --adopt: exit %d: %s", code, errb.String())
	}
	var audited int
	if err := func() error {
		d, err := db.Open(context.Background(), shared)
		if err != nil {
			return err
		}
		defer d.Close()
		return d.QueryRow(context.Background(), `SELECT COUNT(*) FROM audit_log WHERE source = 'cli' AND activity = 'public-key --adopt' AND result_code = 'ok' AND message LIKE '%replacing%'`).Scan(&audited)
	}(); err != nil || audited != 1 {
		t.Errorf("adopt audit records: %d, %v", audited, err)
	}
	a, plain, _ := testApp(nil)
	if runMerchant(context.Background(), a, []string{"public-key", "--data", dirB}); plain.String() != out.String() || out.Len() < 500 {
		t.Fatalf("--adopt printed %q, the key is %q", out.String(), plain.String())
	}
	if ok, out := start(dirB, map[string]string{}); !ok {
		t.Fatalf("the adopted key: %s", out)
	}
	if ok, _ := start(dirA, map[string]string{}); ok {
		t.Fatal("the key replaced still starts")
	}
}

// souk merchant backup copies a running SQLite merchant into a new data
// directory (database and key pair) from which a merchant starts.
func TestMerchantBackup(t *testing.T) {
	data := t.TempDir()
	env := map[string]string{"SOUK_ACCESS_KEY": "k1", "SOUK_KIT_KEY": "kit-key-1"}
	addr := freePort(t)
	runningMerchant(t, env, "http://"+addr+"/healthz", "--listen", addr, "--data", data)
	out := filepath.Join(t.TempDir(), "backup")
	b, stdout, stderr := testApp(nil)
	if code := runMerchant(context.Background(), b, []string{"backup", "--data", data, "--out", out}); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"integrity ok", "kit-rsa-key.pem", "restore: stop the merchant, then start it with --data " + out} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("backup output lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, f := range []string{"merchant.db", "kit-rsa-key.pem"} {
		st, err := os.Stat(filepath.Join(out, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}
	live, err := db.Open(context.Background(), filepath.Join(data, "merchant.db"))
	if err != nil {
		t.Fatal(err)
	}
	var audited int
	err = live.QueryRow(context.Background(), `SELECT COUNT(*) FROM audit_log WHERE source = 'cli' AND activity = 'backup' AND result_code = 'ok' AND message LIKE $1`,
		"%"+out+"%integrity ok%").Scan(&audited)
	live.Close()
	if err != nil || audited != 1 {
		t.Errorf("backup audit records: %d, %v", audited, err)
	}
	orig, _ := os.ReadFile(filepath.Join(data, "kit-rsa-key.pem"))
	if cp, _ := os.ReadFile(filepath.Join(out, "kit-rsa-key.pem")); !bytes.Equal(orig, cp) {
		t.Fatal("key pair not copied")
	}
	// The copy holds the database's facts: the key recorded, so a merchant
	// started on it with the copied key starts, and with another key does not.
	c, _, cerr := testApp(env)
	if code := runMerchant(context.Background(), c, []string{"--listen", "256.0.0.1:1", "--data", out}); code != 1 || !strings.Contains(cerr.String(), "listen") {
		t.Fatalf("merchant on the backup: exit %d (want 1, listen error after the key check): %s", code, cerr.String())
	}
	_ = os.Remove(filepath.Join(out, "kit-rsa-key.pem"))
	c, _, cerr = testApp(env)
	if code := runMerchant(context.Background(), c, []string{"--listen", "256.0.0.1:1", "--data", out}); code != 2 || !strings.Contains(cerr.String(), "is not the key recorded") {
		t.Fatalf("merchant on the backup without its key: exit %d: %s", code, cerr.String())
	}
	// A relative --out whose parents do not exist yet (as in
	// --out backups/souk-$(date +%F)).
	t.Chdir(t.TempDir())
	b, _, stderr = testApp(nil)
	if code := runMerchant(context.Background(), b, []string{"backup", "--data", data, "--out", "backups/today"}); code != 0 {
		t.Fatalf("backup to a relative path: exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join("backups", "today", "merchant.db")); err != nil {
		t.Fatal(err)
	}
	// A backup that fails leaves nothing behind that would block the next
	// (here the key pair cannot be read: it is a directory).
	bad := t.TempDir()
	if err := os.Mkdir(filepath.Join(bad, "kit-rsa-key.pem"), 0o700); err != nil {
		t.Fatal(err)
	}
	live2, err := db.Open(context.Background(), filepath.Join(data, "merchant.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backupTo(context.Background(), live2, "live", bad, "failed/one"); err == nil {
		t.Error("backup with an unreadable key pair succeeded")
	}
	live2.Close()
	if _, err := os.Stat(filepath.Join("failed", "one")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed backup left its directory: %v", err)
	}
	// Not over an existing directory; not of PostgreSQL.
	b, _, stderr = testApp(nil)
	if code := runMerchant(context.Background(), b, []string{"backup", "--data", data, "--out", out}); code != 1 || !strings.Contains(stderr.String(), "exists") {
		t.Errorf("backup over an existing directory: exit %d: %s", code, stderr.String())
	}
	b, _, stderr = testApp(nil)
	if code := runMerchant(context.Background(), b, []string{"backup", "--data", t.TempDir(), "--out", filepath.Join(t.TempDir(), "x")}); code != 1 || !strings.Contains(stderr.String(), "no merchant database") {
		t.Errorf("backup of an empty data directory: exit %d: %s", code, stderr.String())
	}
	b, _, stderr = testApp(nil)
	pg := dbtest.DSN(t, "postgres")
	if code := runMerchant(context.Background(), b, []string{"backup", "--db", pg, "--out", filepath.Join(t.TempDir(), "x")}); code != 2 || !strings.Contains(stderr.String(), "pg_dump") {
		t.Errorf("backup of PostgreSQL: exit %d: %s", code, stderr.String())
	}
}

// With --admin-listen, the management API, the kit directory API and
// /metrics answer there and not on --listen; the production address, the
// kit sync interfaces and health stay on --listen.
func TestMerchantAdminListen(t *testing.T) {
	dir := t.TempDir()
	addr, adminAddr := freePort(t), freePort(t)
	runningMerchant(t, map[string]string{"SOUK_ACCESS_KEY": "k1", "SOUK_KIT_KEY": "kit-key-1", "SOUK_ADMIN_TOKEN": "adm"},
		"http://"+adminAddr+"/healthz", "--listen", addr, "--admin-listen", adminAddr, "--data", dir)
	// call answers the HTTP status and whether the body is JSON (an answer of
	// souk's, not the mux's "404 page not found").
	call := func(method, url string) (int, bool) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer adm")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
	}
	for _, tc := range []struct {
		name, method, path string
		public, admin      int // statuses; 0: souk's JSON 404 (an unknown tenant)
	}{
		{"production address", "POST", "/koogallery", 200, 404},
		{"kit sync", "POST", "/koogallery/produceAPI/v2/tenantSync", 200, 404},
		{"management API", "GET", "/api/v1/events", 404, 200},
		{"kit directory API", "GET", "/api/v1/tenants/nobody", 404, 0},
		{"metrics", "GET", "/metrics", 404, 200},
		{"healthz", "GET", "/healthz", 200, 200},
	} {
		for _, side := range []struct {
			name, base string
			want       int
		}{{"public", "http://" + addr, tc.public}, {"admin", "http://" + adminAddr, tc.admin}} {
			status, isJSON := call(tc.method, side.base+tc.path)
			switch {
			case side.want == 0 && (status != 404 || !isJSON):
				t.Errorf("%s on the %s side: HTTP %d (JSON %v), want the directory's JSON 404", tc.name, side.name, status, isJSON)
			case side.want != 0 && status != side.want:
				t.Errorf("%s on the %s side: HTTP %d, want %d", tc.name, side.name, status, side.want)
			}
		}
	}
}

// runningMerchant runs `souk merchant args…` until the test ends, once
// health (a URL) answers; at cleanup it stops it and expects exit 0.
func runningMerchant(t *testing.T, env map[string]string, health string, args ...string) {
	t.Helper()
	a, _, errb := testApp(env)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- runMerchant(ctx, a, append(args, "--log-format", "text")) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("merchant exit %d: %s", code, errb.String())
		}
	})
	for i := 0; ; i++ {
		if resp, err := http.Get(health); err == nil {
			resp.Body.Close()
			return
		}
		select {
		case code := <-done:
			done <- code
			t.Fatalf("merchant exited %d before answering %s: %s", code, health, errb.String())
		default:
		}
		if i == 200 {
			t.Fatalf("merchant did not answer %s: %s", health, errb.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// --kit-max-body bounds the kit sync bodies (before any signature work).
func TestMerchantKitMaxBody(t *testing.T) {
	addr := freePort(t)
	runningMerchant(t, map[string]string{"SOUK_ACCESS_KEY": "k1", "SOUK_KIT_KEY": "kit-key-1"}, "http://"+addr+"/healthz",
		"--listen", addr, "--data", t.TempDir(), "--kit-max-body", "2048")
	for _, c := range []struct {
		size int
		want string
	}{{1000, "000001"}, {3000, "000002"}} {
		body := `{"tenantId":"` + strings.Repeat("t", c.size) + `"}`
		resp, err := http.Post("http://"+addr+"/koogallery/produceAPI/v2/tenantSync", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `"resultCode":"`+c.want+`"`) {
			t.Errorf("%d-byte body: %s, want %s", len(body), b, c.want)
		}
	}
}
