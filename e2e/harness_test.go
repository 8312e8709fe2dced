package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soukhq/souk/bench"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

const (
	accessKey     = "e2e-access-key-0001"
	webhookSecret = "whsec_e2e_secret"
)

// soukBinary is the souk binary built once for the package's tests.
var soukBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "souk-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	soukBinary = filepath.Join(dir, "souk")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	build := exec.Command("go", "build", "-o", soukBinary, "./cmd/souk")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: go build ./cmd/souk:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// receiver is the vendor app: it verifies every webhook, records every
// delivery (deduplicating nothing) and completes instances at once.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	all []delivery
	bad int
}

type delivery struct {
	EventID string
	Type    string
	Subject string
	OrderID string
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := handoff.Verify([]string{webhookSecret}, r.Header.Get(handoff.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		rc.mu.Lock()
		rc.bad++
		rc.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var env struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Subject string `json:"subject"`
		Data    struct {
			OrderID string `json:"orderId"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.all = append(rc.all, delivery{EventID: env.ID, Type: env.Type, Subject: env.Subject, OrderID: env.Data.OrderID})
	rc.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"appInfo":{"frontEndUrl":"https://app.example.com/%s","userName":"admin","password":"e2e-Passw0rd"}}`, env.Subject)
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.all...)
}

// createdByOrder groups the instance.created deliveries: order → event id →
// deliveries of that event.
func (rc *receiver) createdByOrder() map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, d := range rc.deliveries() {
		if d.Type != "instance.created" {
			continue
		}
		if out[d.OrderID] == nil {
			out[d.OrderID] = map[string]int{}
		}
		out[d.OrderID][d.EventID]++
	}
	return out
}

// env is one test's world: a fake market, a vendor app and a store.
type env struct {
	t       *testing.T
	backend string
	dsn     string // the store (SQLite file or PostgreSQL database)
	data    string // --data directory
	market  *httptest.Server
	app     *receiver
}

func newEnv(t *testing.T, backend, dsn string) *env {
	e := &env{t: t, backend: backend, dsn: dsn, data: t.TempDir(), app: newReceiver(t)}
	e.market = httptest.NewServer(&bench.FakeMarket{})
	t.Cleanup(e.market.Close)
	if backend == "sqlite" {
		e.dsn = filepath.Join(e.data, "merchant.db")
	}
	return e
}

// proc is a running `souk merchant`.
type proc struct {
	cmd  *exec.Cmd
	base string // production address
	done chan struct{}
	log  *bytes.Buffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// start runs `souk merchant` on the env's store and waits until it answers.
func (e *env) start() *proc {
	e.t.Helper()
	addr := freeAddr(e.t)
	args := []string{"merchant", "--listen", addr, "--data", e.data, "--log-level", "warn", "--budget", "2s"}
	if e.backend == "postgres" {
		args = append(args, "--db", e.dsn)
	}
	cmd := exec.Command(soukBinary, args...)
	cmd.Env = append(os.Environ(),
		"SOUK_ACCESS_KEY="+accessKey,
		"SOUK_MARKET_URL="+e.market.URL, "SOUK_MARKET_AK="+bench.MarketAK, "SOUK_MARKET_SK="+bench.MarketSK,
		"SOUK_WEBHOOK_URL="+e.app.srv.URL, "SOUK_WEBHOOK_SECRET="+webhookSecret,
	)
	buf := &bytes.Buffer{}
	sb := &syncBuffer{b: buf}
	cmd.Stdout, cmd.Stderr = sb, sb
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &proc{cmd: cmd, base: "http://" + addr + "/koogallery", done: make(chan struct{}), log: buf}
	go func() { _ = cmd.Wait(); close(p.done) }()
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if e.t.Failed() {
			sb.mu.Lock()
			e.t.Logf("merchant %s output:\n%s", addr, buf.String())
			sb.mu.Unlock()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			sb.mu.Lock()
			defer sb.mu.Unlock()
			e.t.Fatalf("souk merchant exited at start:\n%s", buf.String())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("souk merchant did not answer /healthz within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var httpClient = &http.Client{
	Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512},
	Timeout:   20 * time.Second,
}

type answer struct {
	ResultCode string `json:"resultCode"`
	ResultMsg  string `json:"resultMsg"`
	InstanceID string `json:"instanceId"`
}

// newInstance sends one signed newInstance (fresh nonce) to base.
func newInstance(ctx context.Context, base, orderID, businessID string) (answer, error) {
	body, _ := json.Marshal(map[string]string{"activity": kg.ActivityNewInstance, "orderId": orderID, "orderLineId": orderID + "-000001",
		"businessId": businessID, "testFlag": "0"})
	u, err := kg.SignedURL(base, accessKey, body, time.Now(), randHex(32))
	if err != nil {
		return answer{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return answer{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
	if err := kg.VerifyBodySignHeader(accessKey, resp.Header.Get("Body-Sign"), raw); err != nil {
		return answer{}, fmt.Errorf("answer Body-Sign: %w", err)
	}
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		return answer{}, fmt.Errorf("answer %q: %w", raw, err)
	}
	return a, nil
}

func accepted(code string) bool { return code == kg.CodeSuccess || code == kg.CodeInProgress }

// openStore opens the env's store (read side; the merchant process writes).
func (e *env) openStore() *db.DB {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := db.Open(ctx, e.dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = d.Close() })
	return d
}

// instancesPerOrder counts the store's instances of orders with prefix.
func instancesPerOrder(t *testing.T, d *db.DB, prefix string) map[string]int {
	t.Helper()
	rows, err := d.Query(context.Background(), `SELECT order_id, COUNT(*) FROM merchant_instances WHERE order_id LIKE $1 GROUP BY order_id`, prefix+"%")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			o string
			n int
		)
		if err := rows.Scan(&o, &n); err != nil {
			t.Fatal(err)
		}
		out[o] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s (%s)", what, d, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func orderPrefix(name string) string {
	return strings.ToUpper(name) + randHex(3) + "-"
}
