package merchant

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

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

// FuzzParseUsageValue: accepted values have at most 4 decimals and format
// back to an equal value.
func FuzzParseUsageValue(f *testing.F) {
	for _, s := range []string{"1", "0.5", "12.3456", "0", "-1", "1e3", "1.23456", "999999999999.9999", " 7 ", "00.10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseUsageValue(s, true)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("negative %d from %q", v, s)
		}
		back, err := parseUsageValue(formatUsage(v), true)
		if err != nil || back != v {
			t.Fatalf("%q → %d → %q → %d, %v", s, v, formatUsage(v), back, err)
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
