package check

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/soukhq/souk/kg"
)

// maxExamples bounds the findings an answer check lists; the rest are counted.
const maxExamples = 3

// audited returns the exchanges whose answers the answer checks judge.
func (s *session) audited() []*exchange {
	var out []*exchange
	for _, x := range s.c.all() {
		if x.Audit {
			out = append(out, x)
		}
	}
	return out
}

// limited records at most maxExamples findings and a count of the rest.
type limited struct {
	t    *T
	n    int
	warn bool
}

func (l *limited) add(f Finding) {
	l.n++
	if l.n <= maxExamples {
		if l.warn || f.Severity == Warn {
			l.t.warn(f)
		} else {
			l.t.fail(f)
		}
	}
}

func (l *limited) done(what string) {
	if l.n > maxExamples {
		l.t.note("%d more %s not listed", l.n-maxExamples, what)
	}
}

func noAnswers(t *T, xs []*exchange) bool {
	if len(xs) == 0 {
		t.skip("no answers to judge")
		return true
	}
	return false
}

func answerHTTP200(_ context.Context, s *session, t *T) {
	xs := s.audited()
	if noAnswers(t, xs) {
		return
	}
	l := &limited{t: t}
	for _, x := range xs {
		if x.Err != nil {
			continue // judged by answer.latency
		}
		if x.Status == 200 {
			continue
		}
		f := Finding{What: fmt.Sprintf("%s answered HTTP %d", orDash(x.Activity), x.Status), Sent: x.sent(), Got: x.got(),
			Want: "HTTP 200; the outcome is carried by resultCode (a non-200 answer counts as a failed call and is retried)", Ref: refHTTP}
		if x.Parsed != nil && x.Code() != "" && x.Code() != kg.CodeSuccess && x.Code() != kg.CodeInProgress {
			// An error answer with an error status: the documents do not
			// say which status an error carries (saas-v2.md §7 [inferred]).
			f.Severity = Warn
			f.What += " with resultCode " + x.Code()
			f.Want = "HTTP 200 with the error in resultCode (HTTP semantics of errors are undocumented)"
			f.Ref = "saas-v2.md §7 [inferred]; README.md policy 7"
		}
		l.add(f)
	}
	l.done("non-200 answers")
	t.note("%d answers judged", len(xs))
}

func orDash(s string) string {
	if s == "" {
		return "a request without activity"
	}
	return s
}

func answerJSON(_ context.Context, s *session, t *T) {
	xs := s.audited()
	if noAnswers(t, xs) {
		return
	}
	l := &limited{t: t}
	ct := &limited{t: t, warn: true}
	for _, x := range xs {
		if x.Err != nil {
			continue
		}
		if x.Parsed == nil {
			_, err := ParseAnswer(x.Answer)
			l.add(Finding{What: fmt.Sprintf("the %s answer is not a JSON object (%v)", orDash(x.Activity), err), Sent: x.sent(), Got: x.got(),
				Want: "a JSON object with resultCode and resultMsg", Ref: refResponse})
			continue
		}
		if c := x.Header.Get("Content-Type"); !strings.Contains(strings.ToLower(c), "json") {
			ct.add(Finding{What: fmt.Sprintf("the %s answer has Content-Type %q", orDash(x.Activity), c), Sent: x.sent(), Got: x.got(),
				Want: "application/json (the examples' content type; not stated as a rule)", Ref: "saas-v2.md §1 (headers seen in examples)"})
		}
	}
	l.done("non-JSON answers")
	ct.done("Content-Type warnings")
}

func answerFields(_ context.Context, s *session, t *T) {
	xs := s.audited()
	if noAnswers(t, xs) {
		return
	}
	l := &limited{t: t}
	for _, x := range xs {
		if x.Parsed == nil {
			continue
		}
		for _, v := range x.Parsed.Validate(x.Activity, s.cfg.Mode) {
			if strings.HasSuffix(v.Field, "memo") && strings.Contains(v.Problem, "non-ASCII") {
				continue // answer.memo
			}
			f := Finding{What: fmt.Sprintf("%s answer: %s", orDash(x.Activity), v), Sent: x.sent(), Got: x.got(), Want: "the documented response table", Ref: v.Ref}
			if v.Optional {
				f.Severity = Warn
			}
			l.add(f)
		}
	}
	l.done("field problems")
}

func answerBodySign(_ context.Context, s *session, t *T) {
	xs := s.audited()
	if noAnswers(t, xs) {
		return
	}
	l := &limited{t: t}
	present, absent := 0, 0
	for _, x := range xs {
		if x.Err != nil {
			continue
		}
		h := x.Header.Get("Body-Sign")
		if h == "" {
			absent++
			continue
		}
		present++
		// The key is the one bound to the interface; accept either key.
		err := kg.VerifyBodySignHeader(s.cfg.AccessKey, h, x.Answer)
		if err != nil && s.cfg.NotifyKey != s.cfg.AccessKey {
			if kg.VerifyBodySignHeader(s.cfg.NotifyKey, h, x.Answer) == nil {
				err = nil
			}
		}
		if err != nil {
			l.add(Finding{What: fmt.Sprintf("the %s answer's Body-Sign is invalid: %v", orDash(x.Activity), err), Sent: x.sent(), Got: x.got() + "\nBody-Sign: " + h,
				Want: `Body-Sign: sign_type="HMAC-SHA256", signature= "<base64(HMAC-SHA256(access key, exact answer bytes))>"`, Ref: refBodySign})
		}
	}
	l.done("invalid Body-Sign headers")
	t.note("Body-Sign present on %d answers, absent on %d (V2 does not confirm it is checked)", present, absent)
}

func answerCredentials(_ context.Context, s *session, t *T) {
	xs := s.audited()
	if noAnswers(t, xs) {
		return
	}
	l := &limited{t: t}
	seen, encrypted := 0, 0
	for _, x := range xs {
		if x.Parsed == nil || x.Activity != "queryInstance" {
			continue
		}
		et := x.Parsed.EncryptType
		for _, ii := range x.Parsed.Info {
			if ii.AppInfo == nil {
				continue
			}
			for _, c := range []struct{ name, value string }{{"userName", ii.AppInfo.UserName}, {"password", ii.AppInfo.Password}} {
				if c.value == "" {
					continue
				}
				seen++
				if n := utf8.RuneCountInString(c.value); n > 128 {
					l.add(Finding{What: fmt.Sprintf("appInfo.%s is %d characters long", c.name, n), Sent: x.sent(), Got: x.got(),
						Want: "at most 128 characters, iv included when encrypted (otherwise the buyer sees no credentials and the product stays \"opening\")", Ref: refCred + " (length limit)"})
				}
				if et != "1" && et != "2" {
					continue
				}
				encrypted++
				if _, err := kg.DecryptCredential(s.cfg.AccessKey, et, c.value); err != nil {
					l.add(Finding{What: fmt.Sprintf("appInfo.%s does not decrypt with encryptType %s: %v", c.name, et, err), Sent: x.sent(), Got: x.got(),
						Want: "iv (16 characters) + base64(AES-CBC-PKCS5(key derived from the access key with SHA1PRNG, plaintext))", Ref: refCred})
				}
			}
		}
	}
	l.done("credential problems")
	switch {
	case seen == 0:
		t.note("no userName/password returned (allowed when the merchant delivers them by SMS or e-mail)")
	case encrypted == 0:
		t.note("credentials returned in plaintext (the current V2 tables; README.md policy 4)")
	default:
		t.note("%d encrypted credential values checked", encrypted)
	}
}

func answerMemo(_ context.Context, s *session, t *T) {
	xs := s.audited()
	if noAnswers(t, xs) {
		return
	}
	l := &limited{t: t}
	memos := 0
	for _, x := range xs {
		if x.Parsed == nil {
			continue
		}
		for i, ii := range x.Parsed.Info {
			if ii.AppInfo == nil || len(ii.AppInfo.MemoRaw) == 0 {
				continue
			}
			memos++
			for _, b := range []byte(ii.AppInfo.MemoRaw) {
				if b >= 0x80 {
					l.add(Finding{What: fmt.Sprintf("info[%d].appInfo.memo contains raw non-ASCII characters: %s", i, clip(string(ii.AppInfo.MemoRaw), 80)), Sent: x.sent(), Got: x.got(),
						Want: `non-ASCII characters (e.g. Chinese) written as \uXXXX escapes, e.g. "\u8bf4\u660e"`, Ref: refQuery + " (memo)"})
					break
				}
			}
		}
	}
	l.done("memo problems")
	if memos == 0 {
		t.note("no memo returned")
	}
}

func answerLatency(_ context.Context, s *session, t *T) {
	all := s.c.all()
	if noAnswers(t, all) {
		return
	}
	l := &limited{t: t}
	for _, x := range all {
		if x.TimedOut || x.Latency > s.cfg.Timeout {
			l.add(Finding{What: fmt.Sprintf("%s took %v", orDash(x.Activity), x.Latency.Round(time.Millisecond)), Sent: x.sent(), Got: x.got(),
				Want: fmt.Sprintf("an answer within %v; KooGallery gives up after 5 s and counts a failed call", s.cfg.Timeout), Ref: refTimeout})
		} else if x.Err != nil {
			l.add(Finding{What: fmt.Sprintf("%s got no answer: %v", orDash(x.Activity), x.Err), Sent: x.sent(), Got: x.got(), Want: "an HTTP answer", Ref: refHTTP})
		}
	}
	l.done("slow or missing answers")
	lat := latencyOf(all, s.cfg.Timeout)
	t.note("%d calls: p50 %s, p95 %s, max %s", lat.Calls, fmtDur(lat.P50), fmtDur(lat.P95), fmtDur(lat.Max))
}
