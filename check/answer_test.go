package check

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidate(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		name     string
		activity string
		mode     string
		body     string
		want     []string // substrings of the fatal violations, in any order
		warn     []string // substrings of the optional violations
	}{
		{"minimal success", "releaseInstance", ModePeriod, `{"resultCode":"000000","resultMsg":"success"}`, nil, nil},
		{"resultMsg optional", "releaseInstance", ModePeriod, `{"resultCode":"000003"}`, nil, nil},
		{"missing resultCode", "releaseInstance", ModePeriod, `{"resultMsg":"ok"}`, []string{"resultCode: mandatory field is missing"}, nil},
		{"numeric resultCode", "releaseInstance", ModePeriod, `{"resultCode":0,"resultMsg":"ok"}`, []string{"resultCode: must be a JSON string"}, nil},
		{"long resultCode", "releaseInstance", ModePeriod, `{"resultCode":"0000000"}`, []string{"resultCode: is 7 characters"}, nil},
		{"unknown code", "releaseInstance", ModePeriod, `{"resultCode":"123456"}`, nil, []string{"not in the documented result-code table"}},
		{"long resultMsg", "releaseInstance", ModePeriod, `{"resultCode":"000000","resultMsg":"` + long(256) + `"}`, []string{"resultMsg: is 256 characters"}, nil},
		{"resultMsg 255 CJK characters is fine", "releaseInstance", ModePeriod, `{"resultCode":"000000","resultMsg":"` + strings.Repeat("好", 255) + `"}`, nil, nil},
		{"newInstance without instanceId", "newInstance", ModePeriod, `{"resultCode":"000000"}`, []string{"instanceId: mandatory field is missing"}, nil},
		{"newInstance 000004 without instanceId", "newInstance", ModePeriod, `{"resultCode":"000004"}`, []string{"instanceId: mandatory field is missing"}, nil},
		{"newInstance error without instanceId", "newInstance", ModePeriod, `{"resultCode":"000001"}`, nil, nil},
		{"newInstance long instanceId", "newInstance", ModePeriod, `{"resultCode":"000000","instanceId":"` + long(65) + `"}`, []string{"instanceId: is 65 characters"}, nil},
		{"bad encryptType", "queryInstance", ModePeriod, `{"resultCode":"000000","encryptType":"3"}`, []string{"encryptType: must be"}, nil},
		{"numeric encryptType", "queryInstance", ModePeriod, `{"resultCode":"000000","encryptType":1}`, []string{"encryptType: must be"}, nil},
		{"query ok", "queryInstance", ModePeriod, `{"resultCode":"000000","info":[{"instanceId":"i1","appInfo":{"frontEndUrl":"https://a","memo":"\u8bf4"}}]}`, nil, nil},
		{"info not an array", "queryInstance", ModePeriod, `{"resultCode":"000000","info":{"instanceId":"i1"}}`, []string{"info: must be an array"}, nil},
		{"info entry without instanceId", "queryInstance", ModePeriod, `{"resultCode":"000000","info":[{"appInfo":{"frontEndUrl":"https://a"}}]}`, []string{"info[0].instanceId: mandatory"}, nil},
		{"appInfo without frontEndUrl", "queryInstance", ModePeriod, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{}}]}`, []string{"info[0].appInfo.frontEndUrl: mandatory"}, nil},
		{"appInfo absent warns", "queryInstance", ModePeriod, `{"resultCode":"000000","info":[{"instanceId":"i"}]}`, nil, []string{"appInfo: is absent"}},
		{"password too long", "queryInstance", ModePeriod, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u","password":"` + long(129) + `"}}]}`, []string{"password: is 129 characters"}, nil},
		{"raw non-ASCII memo", "queryInstance", ModePeriod, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u","memo":"说明"}}]}`, []string{"memo: contains raw non-ASCII"}, nil},
		{"memo too long", "queryInstance", ModePeriod, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u","memo":"` + long(1025) + `"}}]}`, []string{"memo: is 1025 characters"}, nil},
		{"pay-per-use without usageInfo", "queryInstance", ModeOnDemand, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u"}}]}`, []string{"usageInfo: is absent"}, nil},
		{"period without usageInfo is fine", "queryInstance", ModePeriod, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u"}}]}`, nil, nil},
		{"usage ok", "queryInstance", ModeOnDemand, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u"},"usageInfo":[{"usageValue":12.5,"statisticalTime":"20260101120000000"}]}]}`, nil, nil},
		{"usage as string warns", "queryInstance", ModeOnDemand, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u"},"usageInfo":[{"usageValue":"12.5","statisticalTime":"20260101120000000"}]}]}`, nil, []string{"usageValue: is a string"}},
		{"usage 5 decimals", "queryInstance", ModeOnDemand, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u"},"usageInfo":[{"usageValue":1.23456,"statisticalTime":"20260101120000000"}]}]}`, []string{"more than 4 decimals"}, nil},
		{"usage bad time", "queryInstance", ModeOnDemand, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u"},"usageInfo":[{"usageValue":1,"statisticalTime":"2026-01-01"}]}]}`, []string{"is not a yyyyMMddHHmmssSSS time"}, nil},
		{"usage missing value", "queryInstance", ModeOnDemand, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u"},"usageInfo":[{"statisticalTime":"20260101120000000"}]}]}`, []string{"usageValue: mandatory"}, nil},
		{"usage value object", "queryInstance", ModeOnDemand, `{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u"},"usageInfo":[{"usageValue":{},"statisticalTime":"20260101120000000"}]}]}`, []string{"usageValue: must be a number"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := ParseAnswer([]byte(c.body))
			if err != nil {
				t.Fatalf("ParseAnswer: %v", err)
			}
			var fatal, opt []string
			for _, v := range a.Validate(c.activity, c.mode) {
				if v.Ref == "" {
					t.Errorf("violation without a rule reference: %v", v)
				}
				if v.Optional {
					opt = append(opt, v.String())
				} else {
					fatal = append(fatal, v.String())
				}
			}
			match := func(kind string, got, want []string) {
				if len(got) != len(want) {
					t.Errorf("%s violations %q, want %d matching %q", kind, got, len(want), want)
					return
				}
				for _, w := range want {
					found := false
					for _, g := range got {
						if strings.Contains(g, w) {
							found = true
						}
					}
					if !found {
						t.Errorf("%s violations %q lack %q", kind, got, w)
					}
				}
			}
			match("fatal", fatal, c.want)
			match("optional", opt, c.warn)
		})
	}
}

func TestParseAnswerRejectsNonObjects(t *testing.T) {
	for _, body := range []string{"", "OK", "[]", `"000000"`, "{", `{"resultCode":"000000"`, "null", "<html></html>"} {
		if _, err := ParseAnswer([]byte(body)); err == nil {
			t.Errorf("ParseAnswer(%q) succeeded", body)
		}
	}
}

func TestActivityOf(t *testing.T) {
	cases := map[string]string{
		`{"activity":"newInstance","orderId":"x"}`:   "newInstance",
		`{"orderId":"x","activity":"queryInstance"}`: "queryInstance",
		`{"orderId":"x"}`: "",
		`{"activity":"`:   "",
	}
	for body, want := range cases {
		if got := activityOf([]byte(body)); got != want {
			t.Errorf("activityOf(%s) = %q, want %q", body, got, want)
		}
	}
}

// FuzzParseAnswer feeds arbitrary answers to the parser and the validator:
// neither may panic, every violation names a field and a rule, and a parsed
// answer's resultCode is what a JSON decoder reads.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{
		`{"resultCode":"000000","resultMsg":"success","instanceId":"b-0001"}`,
		`{"resultCode":"000000","encryptType":"1","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"u","userName":"0123456789abcdefoA1bcTFQxviCjqM3Vpjrpg==","memo":"\u8bf4"},"usageInfo":[{"usageValue":1.5,"statisticalTime":"20260101120000000"}]}]}`,
		`{"resultCode":0}`, `[]`, `{"info":[1,2,{"appInfo":[]}]}`, `{"info":[{"usageInfo":[{"usageValue":"1e400"}]}]}`,
	} {
		f.Add([]byte(s), "queryInstance", ModeOnDemand)
	}
	f.Fuzz(func(t *testing.T, body []byte, activity, mode string) {
		a, err := ParseAnswer(body)
		if err != nil {
			return
		}
		for _, v := range a.Validate(activity, mode) {
			if v.Field == "" || v.Problem == "" || v.Ref == "" {
				t.Fatalf("incomplete violation %+v", v)
			}
		}
		if a.ResultCode != "" && !utf8.ValidString(a.ResultCode) && utf8.Valid(body) {
			t.Fatalf("resultCode %q is not valid UTF-8", a.ResultCode)
		}
	})
}

// FuzzUsageValue checks the Double(12,4) judge on arbitrary literals.
func FuzzUsageValue(f *testing.F) {
	for _, s := range []string{`1`, `12.5`, `"12.5"`, `1.23456`, `123456789.1`, `-1`, `1e5`, `{}`, `true`, `"x"`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, v := range usageValue("u.", []byte(raw)) {
			if !strings.HasPrefix(v.Field, "u.") || v.Ref == "" {
				t.Fatalf("bad violation %+v", v)
			}
		}
		_ = isUTCMillisStamp(raw)
	})
}

func TestLookalike(t *testing.T) {
	// class is the set a character of an id may be replaced from.
	class := func(c byte) string {
		switch {
		case '0' <= c && c <= '9':
			return "0123456789"
		case 'a' <= c && c <= 'f':
			return "abcdef"
		case 'A' <= c && c <= 'F':
			return "ABCDEF"
		case 'a' <= c && c <= 'z':
			return "abcdefghijklmnopqrstuvwxyz"
		case 'A' <= c && c <= 'Z':
			return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		}
		return string(c)
	}
	for _, id := range []string{"inst-34-54b4f1559d0e165a", "87b94795-0603-4e24-8ae5-69420d60e3c8", "INST_ABCDEFXYZ_0001", "b-0001"} {
		seen := map[string]bool{}
		for range 20 {
			l := lookalike(id)
			if l == id || len(l) > 64 {
				t.Fatalf("lookalike(%q) = %q", id, l)
			}
			seen[l] = true
			if id == "b-0001" {
				if !strings.HasPrefix(l, "souk-check-absent-") {
					t.Errorf("lookalike(%q) = %q: want a fresh id for a short one", id, l)
				}
				continue
			}
			if len(l) != len(id) {
				t.Fatalf("lookalike(%q) = %q: another length", id, l)
			}
			for i := range len(id) {
				if !strings.Contains(class(id[i]), string(l[i])) {
					t.Errorf("lookalike(%q) = %q: character %d %q is not of the class of %q", id, l, i, l[i], id[i])
				}
			}
		}
		if len(seen) < 19 {
			t.Errorf("lookalike(%q): only %d distinct ids in 20", id, len(seen))
		}
	}
}
