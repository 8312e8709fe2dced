package kg_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/internal/apigsdk"
	"github.com/soukhq/souk/kg"
)

const (
	sdkAK = "HPUAEXAMPLEAK0000001"
	sdkSK = "example/secret+key=="
)

type sdkCase struct {
	name    string
	method  string
	path    string
	query   map[string]any
	headers map[string]string
	body    string // sent verbatim (the SDK writes a string body as is)
}

var sdkCases = []sdkCase{
	{
		name:   "GET query order",
		method: "GET",
		path:   "/api/mkp-openapi-public/global/v1/order/query",
		query:  map[string]any{"orderId": "MOCKPERIODYEARNEW", "orderLineId": "MOCKPERIODYEARNEW-000001", "q": "一 (&=?!#%.*)/x", "multi": []int{3, 1, 2}},
		headers: map[string]string{
			"Content-Type": "application/json",
			"X-Project-Id": "p1",
			"User-Agent":   "huaweicloud-usdk-go/3.0",
		},
	},
	{
		name:   "POST usage push",
		method: "POST",
		path:   "/api/mkp-openapi-public/global/v1/isv/usage-data",
		headers: map[string]string{
			"Content-Type": "application/json;charset=UTF-8",
			"Ts":           "1709690865879",
			"Nonce":        "6c63c221-1f6b-4141-8ff4-22f5dfe82b65",
		},
		body: `{"usage_records":[{"instance_id":"i-1","metering_sn":"sn-1","usage_value":"1.5","memo":"说明"}]}`,
	},
	{
		name:   "DELETE without body, padded header values",
		method: "DELETE",
		path:   "/v1/instances/i-1",
		headers: map[string]string{
			"X-Request-Id": "  r-1  ",
			"X-Stage":      "RELEASE",
		},
	},
	{
		name:   "POST with query and odd path",
		method: "POST",
		path:   "/v1/a b/c%d/",
		query:  map[string]any{"empty": "", "k": "v w"},
		headers: map[string]string{
			"Content-Type": "application/json",
		},
		body: `{"a":1}`,
	},
}

// sdkSign signs tc with the official Huawei Cloud Go SDK signer at date and
// returns the *http.Request the SDK would send.
func sdkSign(t *testing.T, endpoint string, tc sdkCase, date time.Time) *http.Request {
	t.Helper()
	return apigsdk.Sign(t, apigsdk.Call{Method: tc.method, Endpoint: endpoint, Path: tc.path, Query: tc.query, Headers: tc.headers, Body: tc.body},
		sdkAK, sdkSK, date)
}

func lookupSDK(ak string) (string, bool) {
	if ak == sdkAK {
		return sdkSK, true
	}
	return "", false
}

// Requests signed by the official SDK and sent over real HTTP verify; SignAPIG
// produces the very same Authorization header for the same inputs.
func TestAPIGAgainstHuaweiSDK(t *testing.T) {
	date := time.Date(2026, 3, 17, 14, 42, 37, 0, time.UTC)
	type result struct {
		ak  string
		err error
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ak, err := kg.VerifyAPIG(r, body, lookupSDK, date.Add(90*time.Second), kg.DefaultAPIGWindow)
		results <- result{ak, err}
	}))
	defer srv.Close()

	for _, tc := range sdkCases {
		t.Run(tc.name, func(t *testing.T) {
			hr := sdkSign(t, srv.URL, tc, date)
			resp, err := srv.Client().Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if res := <-results; res.err != nil || res.ak != sdkAK {
				t.Fatalf("VerifyAPIG of an SDK-signed request = %q, %v\nAuthorization: %s", res.ak, res.err, hr.Header.Get("Authorization"))
			}

			// SignAPIG on the same inputs gives a byte-identical header.
			u, _ := url.Parse(hr.URL.String())
			mine, _ := http.NewRequest(tc.method, u.String(), strings.NewReader(tc.body))
			for k, v := range tc.headers {
				mine.Header.Set(k, v)
			}
			if err := kg.SignAPIG(mine, []byte(tc.body), sdkAK, sdkSK, date); err != nil {
				t.Fatal(err)
			}
			if got, want := mine.Header.Get("Authorization"), hr.Header.Get("Authorization"); got != want {
				t.Fatalf("SignAPIG Authorization\n got %s\nwant %s", got, want)
			}
			if got := mine.Header.Get("X-Sdk-Date"); got != "20260317T144237Z" {
				t.Fatalf("X-Sdk-Date = %q", got)
			}
		})
	}
}

// For a non-JSON Content-Type the SDK signs UNSIGNED-PAYLOAD instead of the
// body hash; VerifyAPIG accepts that only when there is no body.
func TestAPIGUnsignedPayloadFromSDK(t *testing.T) {
	date := time.Date(2026, 3, 17, 14, 42, 37, 0, time.UTC)
	tc := sdkCase{method: "GET", path: "/api/x", query: map[string]any{"a": "1"}, headers: map[string]string{"Content-Type": "text/plain"}}
	hr := sdkSign(t, "https://mkt.myhuaweicloud.com", tc, date)
	if hr.Header.Get(kg.APIGContentSHA256) != "UNSIGNED-PAYLOAD" {
		t.Fatalf("SDK did not mark the payload unsigned: %v", hr.Header)
	}
	r := httptest.NewRequest(hr.Method, hr.URL.String(), nil)
	r.Header = hr.Header.Clone()
	if _, err := kg.VerifyAPIG(r, nil, lookupSDK, date, time.Minute); err != nil {
		t.Fatalf("empty unsigned payload rejected: %v", err)
	}
	if _, err := kg.VerifyAPIG(r, []byte("smuggled"), lookupSDK, date, time.Minute); err == nil {
		t.Fatal("unsigned payload with a body accepted")
	}
}

// The SDK's own unit-test vectors (core/auth/signer/signer_test.go): headers
// with '_' and Content-Type are not signed.
func TestAPIGVerifiesSDKTestVectors(t *testing.T) {
	now := time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)
	tests := []struct {
		method, url, body, ctype, auth string
	}{
		{"GET", "https://example.huaweicloud.com/path?limit=1", "", "",
			"SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624"},
		{"POST", "https://example.huaweicloud.com/path?key=value", "{\"Name\":\"test\",\"Id\":1}\n", "application/json",
			"SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, Signature=cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59"},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
		r.Header.Set("X-Sdk-Date", "20060102T150405Z")
		r.Header.Set("TEST_UNDERSCORE", "TEST_VALUE")
		if tc.ctype != "" {
			r.Header.Set("Content-Type", tc.ctype)
		}
		r.Header.Set("Authorization", tc.auth)
		ak, err := kg.VerifyAPIG(r, []byte(tc.body), func(ak string) (string, bool) { return "SecretKey", ak == "AccessKey" }, now, time.Minute)
		if err != nil || ak != "AccessKey" {
			t.Fatalf("%s: %q, %v", tc.method, ak, err)
		}
	}
}

func TestAPIGRejectsTampering(t *testing.T) {
	date := time.Date(2026, 3, 17, 14, 42, 37, 0, time.UTC)
	tc := sdkCases[1]
	tc.query = map[string]any{"a": "1"}
	base := func() (*http.Request, []byte) {
		hr := sdkSign(t, "https://mkt.myhuaweicloud.com", tc, date)
		r := httptest.NewRequest(hr.Method, hr.URL.String(), nil)
		r.Header = hr.Header.Clone()
		r.Host = "mkt.myhuaweicloud.com"
		return r, []byte(tc.body)
	}
	r, body := base()
	if _, err := kg.VerifyAPIG(r, body, lookupSDK, date, time.Minute); err != nil {
		t.Fatalf("untampered request rejected: %v", err)
	}
	tests := []struct {
		name   string
		tamper func(r *http.Request, body []byte) []byte
		now    time.Time
	}{
		{"method", func(r *http.Request, b []byte) []byte { r.Method = "PUT"; return b }, date},
		{"path", func(r *http.Request, b []byte) []byte { r.URL.Path += "x"; return b }, date},
		{"query value", func(r *http.Request, b []byte) []byte { r.URL.RawQuery = "a=2"; return b }, date},
		{"query added", func(r *http.Request, b []byte) []byte { r.URL.RawQuery += "&b=1"; return b }, date},
		{"body", func(r *http.Request, b []byte) []byte { return bytes.Replace(b, []byte("1.5"), []byte("9.5"), 1) }, date},
		{"signed header", func(r *http.Request, b []byte) []byte { r.Header.Set("Nonce", "other"); return b }, date},
		{"host", func(r *http.Request, b []byte) []byte { r.Host = "evil.example.com"; return b }, date},
		{"date header", func(r *http.Request, b []byte) []byte { r.Header.Set("X-Sdk-Date", "20260317T144238Z"); return b }, date},
		{"stale", func(r *http.Request, b []byte) []byte { return b }, date.Add(16 * time.Minute)},
		{"future", func(r *http.Request, b []byte) []byte { return b }, date.Add(-16 * time.Minute)},
		{"unknown ak", func(r *http.Request, b []byte) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), sdkAK, "OTHERAK", 1))
			return b
		}, date},
		{"no authorization", func(r *http.Request, b []byte) []byte { r.Header.Del("Authorization"); return b }, date},
		{"signature flipped", func(r *http.Request, b []byte) []byte {
			h := r.Header.Get("Authorization")
			last := h[len(h)-1]
			repl := byte('0')
			if last == '0' {
				repl = '1'
			}
			r.Header.Set("Authorization", h[:len(h)-1]+string(repl))
			return b
		}, date},
		{"content hash header lies", func(r *http.Request, b []byte) []byte {
			r.Header.Set(kg.APIGContentSHA256, "UNSIGNED-PAYLOAD")
			return b
		}, date},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, body := base()
			body = tt.tamper(r, body)
			_, err := kg.VerifyAPIG(r, body, lookupSDK, tt.now, 15*time.Minute)
			if err == nil {
				t.Fatal("tampered request accepted")
			}
			if code, _ := kg.CodeOf(err); code != kg.CodeAuthFailed {
				t.Fatalf("code %s for %v", code, err)
			}
		})
	}
}

func TestSignAPIGVerifiesWithUpperCaseHexAndRoundTrip(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := httptest.NewRequest("GET", "https://mkt.myhuaweicloud.com/api/x?orderId=O1", nil)
	r.Host = ""
	if err := kg.SignAPIG(r, nil, "ak1", "sk1", now); err != nil {
		t.Fatal(err)
	}
	h := r.Header.Get("Authorization")
	i := strings.Index(h, "Signature=") + len("Signature=")
	r.Header.Set("Authorization", h[:i]+strings.ToUpper(h[i:]))
	ak, err := kg.VerifyAPIG(r, nil, func(ak string) (string, bool) { return "sk1", ak == "ak1" }, now, time.Minute)
	if err != nil || ak != "ak1" {
		t.Fatalf("%q %v", ak, err)
	}
	if _, err := kg.VerifyAPIG(r, nil, func(ak string) (string, bool) { return "sk2", true }, now, time.Minute); err == nil {
		t.Fatal("wrong secret accepted")
	}
}
