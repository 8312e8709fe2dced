package check

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
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
		if x.Status >= 300 && x.Status < 400 {
			// Redirects are not followed: KooGallery does not either, as far
			// as anything says, and counts the answer as a failed call.
			f.What = fmt.Sprintf("%s answered HTTP %d, a redirect to %q (not followed)", orDash(x.Activity), x.Status, x.Header.Get("Location"))
			f.Want = "HTTP 200 at the production address itself; a redirect is a non-200 answer, i.e. a failed call (configure the final URL)"
			l.add(f)
			continue
		}
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
		if x.TooLarge {
			l.add(Finding{What: fmt.Sprintf("the %s answer is larger than %d bytes; check read no further", orDash(x.Activity), maxAnswer), Sent: x.sent(), Got: x.got(),
				Want: "a small JSON object with resultCode and resultMsg", Ref: refResponse})
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
		if x.Activity == "queryInstance" {
			for _, id := range unaskedInfo(x) {
				l.add(Finding{What: fmt.Sprintf("queryInstance answer lists instance %q, which the request did not ask for", id), Sent: x.sent(), Got: x.got(),
					Want: "info entries only for the instance ids in the request's instanceId: an entry for another instance shows its URL and credentials to a buyer it does not belong to", Ref: refQuery})
			}
		}
	}
	l.done("field problems")
}

// unaskedInfo returns the instanceIds of a queryInstance answer's info entries
// that the request did not name (nil when the request's instanceId is not a
// string).
func unaskedInfo(x *exchange) []string {
	if x.Parsed == nil || len(x.Parsed.Info) == 0 {
		return nil
	}
	var req map[string]json.RawMessage
	if json.Unmarshal(x.Body, &req) != nil {
		return nil
	}
	ids, ok := rawString(req["instanceId"])
	if !ok {
		return nil
	}
	asked := map[string]bool{}
	for _, id := range strings.Split(ids, ",") {
		asked[strings.TrimSpace(id)] = true
	}
	var out []string
	for _, ii := range x.Parsed.Info {
		if ii.InstanceID != "" && !asked[ii.InstanceID] {
			out = append(out, ii.InstanceID)
		}
	}
	return out
}

func answerBodySign(_ context.Context, s *session, t *T) {
	xs := s.audited()
	if noAnswers(t, xs) {
		return
	}
	l := &limited{t: t}
	missing := &limited{t: t, warn: true}
	unquoted := &limited{t: t, warn: true}
	present, absent := 0, 0
	for _, x := range xs {
		if x.Err != nil {
			continue
		}
		h := x.Header.Get("Body-Sign")
		if h == "" {
			absent++
			missing.add(Finding{What: fmt.Sprintf("the %s answer has no Body-Sign header", orDash(x.Activity)), Sent: x.sent(), Got: x.got(),
				Want: `Body-Sign: sign_type="HMAC-SHA256", signature= "<base64(HMAC-SHA256(access key, exact answer bytes))>" (V2 does not confirm it is checked)`,
				Ref:  "saas-v2.md §2.3 [UNCONFIRMED]; README.md policy 3"})
			continue
		}
		present++
		if p := unquotedBodySignParam(h); p != "" {
			unquoted.add(Finding{What: fmt.Sprintf("the %s answer's Body-Sign parameter %s is not quoted: %s", orDash(x.Activity), p, clip(h, 120)), Sent: x.sent(), Got: x.got(),
				Want: `quoted values as in the sample: sign_type="HMAC-SHA256", signature= "<base64>" (a strict parser may reject unquoted ones)`,
				Ref:  refBodySign})
		}
		// The key is the one bound to the interface: the access key for the
		// basic interfaces, the general key for orderNotify. An orderNotify
		// the merchant rejected, or a request whose activity it cannot know,
		// may be answered with either.
		err := kg.VerifyBodySignHeader(s.cfg.AccessKey, h, x.Answer)
		keyName := "the access key"
		if s.cfg.NotifyKey != s.cfg.AccessKey && !basicActivity(x.Activity) {
			keyName = "the access key or the general (orderNotify) key"
			if err != nil && kg.VerifyBodySignHeader(s.cfg.NotifyKey, h, x.Answer) == nil {
				err = nil
			}
		}
		if err != nil {
			what := fmt.Sprintf("the %s answer's Body-Sign is invalid: %v", orDash(x.Activity), err)
			if s.cfg.NotifyKey != s.cfg.AccessKey && basicActivity(x.Activity) && kg.VerifyBodySignHeader(s.cfg.NotifyKey, h, x.Answer) == nil {
				what = fmt.Sprintf("the %s answer's Body-Sign is made with the general (orderNotify) key, not the access key bound to the basic interfaces", x.Activity)
			}
			l.add(Finding{What: what, Sent: x.sent(), Got: x.got() + "\nBody-Sign: " + h,
				Want: `Body-Sign: sign_type="HMAC-SHA256", signature= "<base64(HMAC-SHA256(key, exact answer bytes))>", the key being ` + keyName, Ref: refBodySign + "; saas-v2.md §1 (one key per interface type)"})
		}
	}
	l.done("invalid Body-Sign headers")
	missing.done("answers without Body-Sign")
	unquoted.done("unquoted Body-Sign headers")
	t.note("Body-Sign present on %d answers, absent on %d (V2 does not confirm it is checked)", present, absent)
}

// basicActivity reports whether activity is one of the basic interfaces,
// whose key is the access key (saas-v2.md §1, key binding).
func basicActivity(activity string) bool {
	switch activity {
	case "newInstance", "queryInstance", "refreshInstance", "updateInstanceStatus", "releaseInstance", "upgradeInstance", "changeInstanceCheck":
		return true
	}
	return false
}

// unquotedBodySignParam returns the name of the first sign_type or signature
// parameter of a Body-Sign header whose value is not in double quotes.
func unquotedBodySignParam(h string) string {
	for _, part := range strings.Split(h, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.TrimSpace(value)
		if (name == "sign_type" || name == "signature") && !(len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"') {
			return name
		}
	}
	return ""
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
				oddIV, err := decryptCredential(s.cfg.AccessKey, et, c.value)
				if err != nil {
					l.add(Finding{What: fmt.Sprintf("appInfo.%s does not decrypt with encryptType %s: %v", c.name, et, err), Sent: x.sent(), Got: x.got(),
						Want: "iv (16 characters) + base64(AES-CBC-PKCS5(key derived from the access key with SHA1PRNG, plaintext))", Ref: refCred})
				} else if oddIV {
					l.add(Finding{Severity: Warn, What: fmt.Sprintf("appInfo.%s decrypts, but its iv %q has characters outside [A-Za-z0-9]", c.name, c.value[:16]), Sent: x.sent(), Got: x.got(),
						Want: "a random 16-character iv; the sample code draws it from [A-Za-z0-9] (the documents say only \"random 16-character string\")", Ref: refCred + " (iv)"})
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

// decryptCredential decrypts an encrypted appInfo value (iv + base64
// ciphertext) with the SHA1PRNG-derived key. Unlike kg.DecryptCredential it
// takes any 16 bytes as the iv: the documents ask only for "a random
// 16-character string". oddIV reports an iv outside the sample's [A-Za-z0-9].
func decryptCredential(accessKey, encryptType, value string) (oddIV bool, err error) {
	bits := 256
	if encryptType == "2" {
		bits = 128
	}
	key, err := kg.SHA1PRNGKey(accessKey, bits)
	if err != nil {
		return false, err
	}
	if len(value) < 16+24 {
		return false, errors.New("too short for a 16-byte iv and one AES block")
	}
	iv := []byte(value[:16])
	ct, err := base64.StdEncoding.DecodeString(value[16:])
	if err != nil {
		return false, errors.New("the part after the 16-byte iv is not base64")
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return false, errors.New("the ciphertext is not whole AES blocks")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return false, err
	}
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(ct, ct)
	pad := int(ct[len(ct)-1])
	if pad < 1 || pad > aes.BlockSize {
		return false, errors.New("bad PKCS5 padding (wrong key?)")
	}
	for _, b := range ct[len(ct)-pad:] {
		if int(b) != pad {
			return false, errors.New("bad PKCS5 padding (wrong key?)")
		}
	}
	for _, c := range iv {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return true, nil
		}
	}
	return false, nil
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
