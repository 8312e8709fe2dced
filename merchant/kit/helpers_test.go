package kit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/internal/testkeys"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

const testKey = "kit-test-key-0123456789"

type fixture struct {
	t     *testing.T
	db    *db.DB
	clk   *clock.Virtual
	svc   *Service
	srv   *httptest.Server
	reg   *prometheus.Registry
	nonce atomic.Int64
}

var epoch = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, backend string) *fixture {
	t.Helper()
	d := dbtest.OpenMigrated(t, backend, jobs.Migrate, handoff.Migrate, Migrate)
	f := &fixture{t: t, db: d, clk: clock.NewVirtual(epoch), reg: prometheus.NewRegistry()}
	f.svc = New(Config{Keys: []string{testKey, "old-rotated-key"}, PrivateKey: testkeys.RSA3072(t), APIToken: "api-token, next-api-token"},
		Deps{DB: d, Clock: f.clk, Registerer: f.reg})
	mux := http.NewServeMux()
	mux.Handle("/isv/produceAPI/v2/", http.StripPrefix("/isv", f.svc.Handler()))
	mux.Handle("/api/v1/", f.svc.APIHandler())
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// forEachBackend runs fn on SQLite and PostgreSQL.
func forEachBackend(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) { fn(t, newFixture(t, b)) })
	}
}

type signOpts struct {
	key       string
	nonce     string
	timestamp string
	signBody  []byte // body the signature covers, when it differs from the one sent
	noSign    bool
}

// call POSTs body to a kit path, signed as KooGallery does, and returns the response.
func (f *fixture) call(path string, body []byte, o signOpts) (Response, *http.Response) {
	f.t.Helper()
	if o.key == "" {
		o.key = testKey
	}
	if o.nonce == "" {
		o.nonce = fmt.Sprintf("nonce-%d-%d", time.Now().UnixNano(), f.nonce.Add(1))
	}
	f.clk.Advance(time.Millisecond) // events of successive calls get distinct, ordered times
	if o.timestamp == "" {
		o.timestamp = strconv.FormatInt(f.clk.Now().UnixMilli(), 10)
	}
	sb := o.signBody
	if sb == nil {
		sb = body
	}
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/isv"+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if !o.noSign {
		req.Header.Set("x-sign", kg.KitSign(o.key, o.nonce, o.timestamp, sb))
	}
	req.Header.Set("x-nonce", o.nonce)
	req.Header.Set("x-timestamp", o.timestamp)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out Response
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(resp.Body); err != nil {
		f.t.Fatal(err)
	}
	if err := json.Unmarshal(raw.Bytes(), &out); err != nil {
		f.t.Fatalf("response %q: %v", raw.String(), err)
	}
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("HTTP %d, want 200", resp.StatusCode)
	}
	if err := kg.VerifyBodySignHeader(testKey, resp.Header.Get("Body-Sign"), raw.Bytes()); err != nil {
		f.t.Fatalf("response Body-Sign: %v", err)
	}
	return out, resp
}

// ok calls and requires resultCode 000000.
func (f *fixture) ok(path string, body any) {
	f.t.Helper()
	r, _ := f.call(path, mustJSON(f.t, body), signOpts{})
	if r.ResultCode != kg.CodeSuccess {
		f.t.Fatalf("%s: %s %s, want 000000", path, r.ResultCode, r.ResultMsg)
	}
}

// code calls and requires the given resultCode.
func (f *fixture) code(want, path string, body []byte, o signOpts) Response {
	f.t.Helper()
	r, _ := f.call(path, body, o)
	if r.ResultCode != want {
		f.t.Fatalf("%s: %s %q, want %s", path, r.ResultCode, r.ResultMsg, want)
	}
	return r
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	if b, ok := v.([]byte); ok {
		return b
	}
	if s, ok := v.(string); ok {
		return []byte(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type event struct {
	Type, Subject string
	TestFlag      bool
	Data          json.RawMessage
}

// events returns every hand-off event emitted so far, in order.
func (f *fixture) events() []event {
	f.t.Helper()
	rows, err := f.db.Query(context.Background(), `SELECT type, subject, test_flag, data FROM handoff_events ORDER BY created_at, event_id`)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	var out []event
	for rows.Next() {
		var e event
		var tf int
		var data string
		if err := rows.Scan(&e.Type, &e.Subject, &tf, &data); err != nil {
			f.t.Fatal(err)
		}
		e.TestFlag, e.Data = tf == 1, json.RawMessage(data)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// eventsAs returns every event with its data decoded as T, in order.
func eventsAs[T any](f *fixture) []struct {
	event
	D T
} {
	f.t.Helper()
	var out []struct {
		event
		D T
	}
	for _, e := range f.events() {
		var d T
		if err := json.Unmarshal(e.Data, &d); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, struct {
			event
			D T
		}{e, d})
	}
	return out
}

func (f *fixture) countEvents(typ string) int {
	n := 0
	for _, e := range f.events() {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func (f *fixture) count(query string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.db.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func tenantBody(flag int, name, domain string) map[string]any {
	return map[string]any{"instanceId": "inst-1", "orderId": "CS1906666666ABCDE", "tenantId": "t-1", "tenantCode": "huawei",
		"name": name, "domainName": domain, "flag": flag, "testFlag": 0, "timeStamp": "20260301160000000"}
}

func appBody(t testing.TB, flag int, clientID, secret string) map[string]any {
	ct, err := kg.EncryptClientSecret(&testkeys.RSA3072(t).PublicKey, secret, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"instanceId": "inst-1", "tenantId": "t-1", "appId": "app-1", "clientId": clientID, "clientSecret": ct,
		"flag": flag, "testFlag": 0, "timeStamp": "20260301160000000"}
}

func user(name, role, enable string) map[string]any {
	return map[string]any{"userName": name, "name": "N " + name, "orgCode": "d1", "role": role, "enable": enable}
}

func authBody(flag int, syncTime string, users ...map[string]any) map[string]any {
	return map[string]any{"instanceId": "inst-1", "tenantId": "t-1", "appId": "app-1", "userList": users,
		"currentSyncTime": syncTime, "flag": flag, "testFlag": 0, "timeStamp": syncTime}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
