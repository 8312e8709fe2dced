package kit

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/internal/bogus"
	"github.com/soukhq/souk/kg"
)

// serveDirect runs one request through h in this goroutine and returns the
// response, its headers, its body and the bytes allocated meanwhile.
func serveDirect(t *testing.T, h http.Handler, path string, body []byte, hdr map[string]string) (Response, http.Header, []byte, uint64) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	n := bogus.Allocated(func() { h.ServeHTTP(rec, req) })
	var r Response
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("response %q: %v", rec.Body.String(), err)
	}
	return r, rec.Header(), rec.Body.Bytes(), n
}

// The audit: a 4 MiB {"a":[0,0,…]} with a fresh x-timestamp and any x-sign
// took 781 MB and 4.1 s before any signature was compared. An unauthenticated
// body now costs about its own size: read, HMACed per key, and re-serialized
// (no tree) only within the fallback bound.
func TestBogusBodyIsCheap(t *testing.T) {
	f := newFixture(t, "sqlite")
	h := f.svc.Handler()
	hdr := func(nonce string) map[string]string {
		return map[string]string{
			"x-timestamp": strconv.FormatInt(f.clk.Now().UnixMilli(), 10),
			"x-sign":      strings.Repeat("ab", 32),
			"x-nonce":     nonce,
		}
	}
	// The bounds leave room for io.ReadAll's growth, which the race detector
	// doubles; the tree parse they guard against allocated 300-700 times the body.
	tests := []struct {
		name     string
		size     int
		want     string
		maxAlloc int // bytes
	}{
		// over the cap: read up to it, answered 000002
		{"4 MiB", 4 << 20, kg.CodeBadParam, 6 * DefaultMaxBody},
		// within the cap, which is also the default fallback bound: read,
		// HMACed, re-serialized twice (sorted, deep)
		{"just under the cap", DefaultMaxBody - 1, kg.CodeAuthFailed, 10 * DefaultMaxBody},
		{"1 MiB", 1 << 20, kg.CodeAuthFailed, 10 * (1 << 20)},
	}
	for i, tc := range tests {
		start := time.Now()
		r, _, _, n := serveDirect(t, h, "/produceAPI/v2/tenantSync", bogus.Body(tc.size), hdr("bogus-"+strconv.Itoa(i)))
		t.Logf("%s (%d bytes): %s in %v, %d bytes allocated", tc.name, tc.size, r.ResultCode, time.Since(start).Round(time.Millisecond), n)
		if r.ResultCode != tc.want {
			t.Errorf("%s: %s %q, want %s", tc.name, r.ResultCode, r.ResultMsg, tc.want)
		}
		if n > uint64(tc.maxAlloc) {
			t.Errorf("%s: %d bytes allocated, want at most %d", tc.name, n, tc.maxAlloc)
		}
	}
}

// A body whose raw bytes are not what was signed needs a fallback slot; with
// none free within the wait it is answered 000004 and its nonce stays unused.
// A raw-signed body needs no slot.
func TestFallbackSlotsBusy(t *testing.T) {
	f := newFixture(t, "sqlite")
	f.svc.fallbackWait = 20 * time.Millisecond
	body := mustJSON(t, tenantBody(FlagAdd, "Acme", "https://acme.example.com"))
	unsorted := bytes.Replace(body, []byte(`{"domainName"`), []byte(`{ "domainName"`), 1)
	sorted, err := kg.KitBody(unsorted)
	if err != nil || bytes.Equal(sorted, unsorted) {
		t.Fatalf("KitBody: %s %v", sorted, err)
	}
	for range cap(f.svc.fallbacks) {
		f.svc.fallbacks <- struct{}{}
	}
	r := f.code(kg.CodeInProgress, PathTenantSync, unsorted, signOpts{nonce: "n-busy", signBody: sorted})
	if !strings.Contains(r.ResultMsg, "busy") {
		t.Errorf("busy answer %q", r.ResultMsg)
	}
	f.code(kg.CodeSuccess, PathTenantSync, unsorted, signOpts{nonce: "n-raw"})
	for range cap(f.svc.fallbacks) {
		<-f.svc.fallbacks
	}
	f.code(kg.CodeSuccess, PathTenantSync, unsorted, signOpts{nonce: "n-busy", signBody: sorted})
	if got := counterValue(t, f.svc.requests.WithLabelValues("tenantSync", kg.CodeInProgress)); got != 1 {
		t.Errorf("busy answers counted %v, want 1", got)
	}
}

// Config.MaxFallbackBody: beyond it only the raw reading authenticates.
func TestMaxFallbackBody(t *testing.T) {
	f := newFixture(t, "sqlite")
	body := mustJSON(t, tenantBody(FlagAdd, "Acme", "https://acme.example.com"))
	unsorted := append([]byte(" "), body...)
	sorted, _ := kg.KitBody(unsorted)
	svc := New(Config{Keys: []string{testKey}, PrivateKey: f.svc.cfg.PrivateKey, MaxFallbackBody: len(unsorted) - 1}, Deps{DB: f.db, Clock: f.clk})
	call := func(nonce string, signed []byte) string {
		ts := strconv.FormatInt(f.clk.Now().UnixMilli(), 10)
		r, _, _, _ := serveDirect(t, svc.Handler(), PathTenantSync, unsorted,
			map[string]string{"x-timestamp": ts, "x-nonce": nonce, "x-sign": kg.KitSign(testKey, nonce, ts, signed)})
		return r.ResultCode
	}
	if got := call("n-sorted", sorted); got != kg.CodeAuthFailed {
		t.Errorf("sorted-signed body over MaxFallbackBody: %s, want 000001", got)
	}
	if got := call("n-raw", unsorted); got != kg.CodeSuccess {
		t.Errorf("raw-signed body over MaxFallbackBody: %s, want 000000", got)
	}
}

// A response's x-sign is computed like a request's; replayed as a request
// (its body, x-nonce, x-timestamp, x-sign) it must never authenticate.
func TestResponseSignatureIsNoOracle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		send := func(path string, body []byte, hdr http.Header) (Response, http.Header, []byte) {
			t.Helper()
			h := map[string]string{}
			for _, k := range []string{"x-sign", "x-nonce", "x-timestamp"} {
				h[k] = hdr.Get(k)
			}
			r, rh, rb, _ := serveDirect(t, f.srv.Config.Handler, "/isv"+path, body, h)
			return r, rh, rb
		}
		body := mustJSON(t, tenantBody(FlagAdd, "Acme", "https://acme.example.com"))
		r, resp := f.call(PathTenantSync, body, signOpts{nonce: "n-request"})
		if r.ResultCode != kg.CodeSuccess {
			t.Fatalf("%s %s", r.ResultCode, r.ResultMsg)
		}
		// the extension still verifies, now bound to the request's nonce
		raw := mustJSON(t, r)
		if resp.Header.Get("x-nonce") != "n-request" {
			t.Errorf("response x-nonce %q, want the request's", resp.Header.Get("x-nonce"))
		}
		if _, err := kg.VerifyKitSign([]string{testKey}, resp.Header.Get("x-sign"), resp.Header.Get("x-nonce"), resp.Header.Get("x-timestamp"), raw, f.clk.Now(), kg.DefaultWindow); err != nil {
			t.Errorf("response x-sign does not verify: %v", err)
		}
		// replayed as a request to every interface: 000001, within the window
		for _, p := range []string{PathTenantSync, PathApplicationSync, PathAuthSync, PathSingleOrgSync, PathAllOrgSync} {
			if rr, _, _ := send(p, raw, resp.Header); rr.ResultCode != kg.CodeAuthFailed {
				t.Errorf("response replayed to %s: %s %q, want 000001", p, rr.ResultCode, rr.ResultMsg)
			}
		}
		// answers to callers who did not authenticate carry no x-sign at all
		unauth := []struct {
			name, path string
			hdr        http.Header
		}{
			{"bad signature", PathTenantSync, http.Header{"X-Sign": {strings.Repeat("00", 32)}, "X-Nonce": {"n-x"}, "X-Timestamp": {resp.Header.Get("x-timestamp")}}},
			{"no interface", "/produceAPI/v2/nothing", http.Header{}},
			{"unsigned", PathAuthSync, http.Header{}},
		}
		for _, u := range unauth {
			rr, rh, rb := send(u.path, body, u.hdr)
			if rr.ResultCode == kg.CodeSuccess || rh.Get("x-sign") != "" || rh.Get("x-nonce") != "" || rh.Get("x-timestamp") != "" {
				t.Errorf("%s: %s, x-sign %q x-nonce %q", u.name, rr.ResultCode, rh.Get("x-sign"), rh.Get("x-nonce"))
			}
			if err := kg.VerifyBodySignHeader(testKey, rh.Get("Body-Sign"), rb); err != nil {
				t.Errorf("%s: Body-Sign: %v", u.name, err)
			}
		}
		// a replayed request's answer is signed (its nonce is recorded), and is no oracle either
		r2, resp2 := f.call(PathTenantSync, body, signOpts{nonce: "n-request"})
		if r2.ResultCode != kg.CodeAuthFailed || resp2.Header.Get("x-nonce") != "n-request" {
			t.Fatalf("replayed request: %s, x-nonce %q", r2.ResultCode, resp2.Header.Get("x-nonce"))
		}
		if rr, _, _ := send(PathTenantSync, mustJSON(t, r2), resp2.Header); rr.ResultCode != kg.CodeAuthFailed {
			t.Errorf("replay answer replayed: %s", rr.ResultCode)
		}
	})
}
