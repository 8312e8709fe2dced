package merchant

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

// FuzzParseOrderAnswer: Query Order answers from the network never panic,
// and a parsed pay-per-use order always has a productId.
func FuzzParseOrderAnswer(f *testing.F) {
	f.Add([]byte(`{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","orderLine":[{"orderLineId":"l","chargingMode":"ON_DEMAND","productInfo":[{"productId":"p"}]}]}}`), "l")
	f.Add([]byte(`{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","orderLine":{"orderLineId":"l","chargingMode":"PERIOD","productInfo":{"productId":1}}}}`), "")
	f.Add([]byte(`{"resultCode":"MKT.0100","resultMsg":"no"}`), "l")
	f.Add([]byte(`{"resultCode":"MKT.0000","orderInfo":null}`), "")
	f.Add([]byte(`[]`), "")
	f.Fuzz(func(t *testing.T, body []byte, line string) {
		o, err := ParseOrderAnswer(body, line)
		if err != nil {
			return
		}
		if o.OnDemand() && o.ProductID == "" {
			t.Fatalf("pay-per-use order without productId: %s", body)
		}
		if !json.Valid(o.Raw) {
			t.Fatalf("Raw is not JSON: %s", o.Raw)
		}
	})
}

// FuzzWebhookVerify: Verify never panics and accepts only what Sign made.
func FuzzWebhookVerify(f *testing.F) {
	now := time.Unix(1700000000, 0)
	f.Add(handoff.Sign("k", now, []byte("body")), []byte("body"))
	f.Add("t=1700000000,v1=zz", []byte("x"))
	f.Add("t=,v1=", []byte(""))
	f.Add(strings.Repeat("v1=a,", 100), []byte("x"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := handoff.Verify([]string{"k"}, header, body, now, time.Minute)
		if err != nil && !errors.Is(err, handoff.ErrSignature) {
			t.Fatalf("error not wrapping ErrSignature: %v", err)
		}
		if err == nil && handoff.Sign("k", now, body) != header && !strings.Contains(header, ",") {
			t.Fatalf("accepted a header Sign did not make: %q", header)
		}
	})
}

// FuzzServeKG: whatever a correctly signed body holds, the production
// address answers HTTP 200 with JSON carrying a documented result code and a
// valid Body-Sign, and never panics.
func FuzzServeKG(f *testing.F) {
	for _, s := range []string{
		`{"activity":"newInstance","orderId":"F1","orderLineId":"F1-1","businessId":"b1"}`,
		`{"activity":"queryInstance","instanceId":"b1,b2"}`,
		`{"activity":"refreshInstance","instanceId":"b1","orderId":"o","orderLineId":"l","scene":"RENEWAL","expireTime":"20300101000000123"}`,
		`{"activity":"updateInstanceStatus","instanceId":"b1","status":"FREEZE","testFlag":1}`,
		`{"activity":"releaseInstance","instanceId":"b1"}`,
		`{"activity":"upgradeInstance","instanceId":"b1","orderId":"u","orderLineId":"u1"}`,
		`{"activity":"changeInstanceCheck","instanceId":"b1","productInfo":"{\"skuCode\":\"s\"}"}`,
		`{"activity":"orderNotify","orderId":"n","orderLineId":"n1","testFlag":"1"}`,
		`{"activity":null}`, `[]`, ``, `{"activity":"newInstance","orderId":12345,"orderLineId":true}`,
	} {
		f.Add([]byte(s))
	}
	// No test logger: f.Log must not be called inside the fuzz target.
	e := newEnv(f, "sqlite", func(c *Config, d *Deps) { c.Budget = time.Second; d.Logger = slog.New(slog.DiscardHandler) })
	e.market.addOrder("F1", "F1-1", ChargingPeriod, "prod-1", "sku-1")
	codes := map[string]bool{}
	for _, c := range kg.Codes() {
		codes[c] = true
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ts := strconv.FormatInt(e.clock.Now().UnixMilli(), 10)
		n := nonce()
		req := httptest.NewRequest(http.MethodPost, "/koogallery?signature="+kg.SignV2(testKey, n, ts, body)+"&timestamp="+ts+"&nonce="+n, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		e.m.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d", rec.Code)
		}
		var r struct {
			ResultCode string `json:"resultCode"`
			ResultMsg  string `json:"resultMsg"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || !codes[r.ResultCode] {
			t.Fatalf("answer %q (%v)", rec.Body.String(), err)
		}
		if r.ResultCode == kg.CodeInternal || r.ResultCode == kg.CodeAuthFailed {
			t.Fatalf("body %q gave %s %s", body, r.ResultCode, r.ResultMsg)
		}
		if err := kg.VerifyBodySignHeader(testKey, rec.Header().Get("Body-Sign"), rec.Body.Bytes()); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseUsageAnswer: usage push answers never panic, and every refused
// record names one of the records sent.
func FuzzParseUsageAnswer(f *testing.F) {
	f.Add(200, []byte(`{"resultCode":"MKT.0000"}`))
	f.Add(500, []byte(`{"resultCode":"MKT.9002","extra_info":{"failed":[{"index":0,"error_code":"005"}]}}`))
	f.Add(500, []byte(`{"extra_info":{"failed":[{"index":-1}]}}`))
	f.Add(400, []byte(`nope`))
	recs := []wireUsage{{MeteringSN: "a"}, {MeteringSN: "b"}}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		failed, err := parseUsageAnswer(status, body, recs)
		if err != nil {
			return
		}
		for sn := range failed {
			if sn == "" {
				t.Fatal("failure without a metering_sn")
			}
		}
	})
}

// FuzzClientIP: clientIP never panics, and names the peer or an address of
// X-Forwarded-For, never anything else.
func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.2:5555", "198.51.100.1, 10.0.0.9", "10.0.0.0/8")
	f.Add("203.0.113.7:1", "1.1.1.1", "10.0.0.0/8")
	f.Add("[fd00::1]:443", "2001:db8::5, garbage, ::1", "fd00::/8,::1")
	f.Add("10.0.0.2", "198.51.100.1:4711,[::1]:80", "10.0.0.2")
	f.Add("", ",,,", "0.0.0.0/0")
	f.Fuzz(func(t *testing.T, remote, forwarded, trusted string) {
		proxies, err := ParseTrustedProxies(trusted)
		if err != nil {
			return
		}
		got := clientIP(remote, []string{forwarded}, proxies)
		host, _, err := net.SplitHostPort(remote)
		if err != nil {
			host = remote
		}
		if got == host {
			return
		}
		a, err := netip.ParseAddr(got)
		if err != nil {
			t.Fatalf("clientIP(%q, %q, %q) = %q: neither the peer nor an address", remote, forwarded, trusted, got)
		}
		found := false
		for e := range strings.SplitSeq(forwarded, ",") {
			e = strings.TrimSpace(e)
			if b, err := netip.ParseAddr(e); err == nil && b.Unmap() == a {
				found = true
			} else if ap, err := netip.ParseAddrPort(e); err == nil && ap.Addr().Unmap() == a {
				found = true
			}
		}
		if !found {
			t.Fatalf("clientIP(%q, %q, %q) = %q: not in X-Forwarded-For", remote, forwarded, trusted, got)
		}
	})
}
