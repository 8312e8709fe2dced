package market

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// ParseResponse never panics, and whatever it accepts has a resultCode.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		`{"resultCode":"000000","resultMsg":"success","instanceId":"b-0001"}`,
		`{"resultCode":0,"info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u","userName":"a","password":"p"},"usageInfo":[{"usageValue":1.5,"statisticalTime":"20240101000000000"}]}]}`,
		`{"resultCode":"000004","instanceId":123}`,
		`{"info":null,"resultCode":"000003"}`,
		`{"resultCode":"000000","info":{"instanceId":"x"}}`,
		`[]`, `null`, `{"resultCode":`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseResponse(body)
		if err == nil && r.ResultCode == "" {
			t.Fatalf("accepted %q without a resultCode", body)
		}
		v, _ := verdict("newInstance", r)
		if v == VerdictSuccess && (r.ResultCode != "000000" || r.InstanceID == "") {
			t.Fatalf("success verdict for %q", body)
		}
	})
}

// ParseMicros is exact and agrees with a float parse within rounding.
func FuzzParseMicros(f *testing.F) {
	for _, s := range []string{"0", "1", "99", "0.5", "1.2345", "123456789012.123456", "1.", ".5", "-1", "1e3", " 7 ", "0001.0100", "1.2345678"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseMicros(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("%q → negative %d", s, v)
		}
		fl, ferr := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if ferr != nil {
			t.Fatalf("%q accepted but not a number", s)
		}
		if d := fl*1e6 - float64(v); d > 1 || d < -1 {
			if fl < 1e9 { // beyond that float64 loses the micros
				t.Fatalf("%q → %d, float says %f", s, v, fl*1e6)
			}
		}
		// Round trip through the canonical form.
		back := strconv.FormatInt(v/1_000_000, 10) + "." + strings.TrimRight(strconv.FormatInt(1_000_000+v%1_000_000, 10)[1:], "0")
		back = strings.TrimSuffix(back, ".")
		if w, err := ParseMicros(back); err != nil || w != v {
			t.Fatalf("%q → %d → %q → %d, %v", s, v, back, w, err)
		}
	})
}

// ParseDuration accepts Go durations and day counts, nothing else.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"720h", "30d", "90m", "1h30m", "0", "d", "-1d", "99999999d", "1.5h", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if !utf8.ValidString(err.Error()) {
				t.Fatal("error is not UTF-8")
			}
			return
		}
		if strings.HasSuffix(strings.TrimSpace(s), "d") && d < 0 {
			t.Fatalf("%q → negative %s", s, d)
		}
	})
}

// activityBody always builds valid JSON with activity first and testFlag last.
func FuzzActivityBody(f *testing.F) {
	f.Add("newInstance", "orderId", "CS1\"\\\u2028x", true)
	f.Add("", "", "", false)
	f.Fuzz(func(t *testing.T, activity, k, v string, test bool) {
		b := activityBody(activity, test, k, v)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%q is not JSON: %v", b, err)
		}
		if !strings.HasPrefix(string(b), `{"activity":`) || !strings.HasSuffix(string(b), `"}`) {
			t.Fatalf("layout %q", b)
		}
	})
}
