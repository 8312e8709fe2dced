// Package defective is a deliberately simple, in-memory KooGallery SaaS V2
// merchant, written directly on package kg, whose defects can be switched on
// one by one. It exists to prove that the conformance suite in package check
// notices each kind of mistake: with no defect it passes the suite; with a
// defect, the check that covers it fails.
//
// It is not the souk merchant and shares no code with it.
package defective

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/kg"
)

// Defect is one switchable mistake.
type Defect string

// The defects, grouped by the check family that must notice them.
const (
	// idempotency
	NotIdempotent        Defect = "not-idempotent"         // every newInstance creates a new instance
	RacyIdempotency      Defect = "racy-idempotency"       // check-then-insert with a gap: concurrent retries create duplicates
	IdemOrderOnly        Defect = "idem-order-only"        // newInstance idempotent on orderId alone: a second order line gets the first line's instance
	OneInstance          Defect = "one-instance"           // every newInstance answers the same instance, whatever the order
	OneDebugInstance     Defect = "one-debug-instance"     // every testFlag "1" newInstance answers the same sandbox instance, which stays listed after release [warning only]
	ReleaseNotIdempotent Defect = "release-not-idempotent" // a second release answers 000003
	FreezeNotIdempotent  Defect = "freeze-not-idempotent"  // freezing a frozen instance answers 000005
	UpgradeNotIdempotent Defect = "upgrade-not-idempotent" // a second upgrade with the same orderId answers 000005
	RefreshNotIdempotent Defect = "refresh-not-idempotent" // a second delivery of the same renewal order answers 000005
	RenewOnce            Defect = "renew-once"             // a second renewal order for an instance answers 000005 (idempotency keyed on the instance, not the order)
	UpgradeOnce          Defect = "upgrade-once"           // a second upgrade order for an instance answers 000005 (idempotency keyed on the instance, not the order)
	FreezeDeletes        Defect = "freeze-deletes"         // FREEZE throws the instance away
	ReleaseFrozenRefused Defect = "release-frozen-refused" // releasing a frozen instance (the release after the freeze period) answers 000005
	RenewFrozenRefused   Defect = "renew-frozen-refused"   // renewing a frozen instance (the renewal during the freeze period) answers 000005

	// security
	AcceptBadSignature Defect = "accept-bad-signature" // no signature check at all
	IgnoreTimestamp    Defect = "ignore-timestamp"     // no timestamp window
	AcceptFuture       Defect = "accept-future"        // only stale timestamps are refused
	AcceptReplay       Defect = "accept-replay"        // no nonce cache
	FirstJSONValueOnly Defect = "first-json-value"     // signs and reads only the first JSON value of the body
	ApplyBeforeAuth    Defect = "apply-before-auth"    // releases before checking the signature (answers 000001 anyway)
	NoAuthMutations    Defect = "noauth-mutations"     // refresh, status and upgrade skip authentication
	NoAuthNewInstance  Defect = "noauth-new-instance"  // newInstance skips authentication
	NoAuthTestFlag     Defect = "noauth-test-flag"     // any testFlag "1" request skips authentication
	NoAuthOrderNotify  Defect = "noauth-order-notify"  // orderNotify skips authentication
	EitherKey          Defect = "either-key"           // any activity is accepted signed with the access key or the general (orderNotify) key
	SignatureOptional  Defect = "signature-optional"   // the signature is checked only when present
	TimestampOptional  Defect = "timestamp-optional"   // a missing timestamp skips the window
	NonceOptional      Defect = "nonce-optional"       // a missing nonce skips the nonce cache
	WideWindow         Defect = "wide-window"          // a ±9-minute timestamp window instead of ±60 s
	SecondsNoWindow    Defect = "seconds-no-window"    // 10-digit (seconds) timestamps skip the window
	ShortNonceCache    Defect = "short-nonce-cache"    // nonces are forgotten after 1 s, long before the window ends
	NonceSkipTestFlag  Defect = "nonce-skip-test-flag" // testFlag "1" requests are authenticated but skip the nonce cache
	MillisOnly         Defect = "millis-only"          // refuses 10-digit (seconds) timestamps [warning only]
	UpperHexOnly       Defect = "upper-hex-only"       // refuses lower-case hex signatures [warning only]

	// bad input
	WrongCodeBadParam        Defect = "wrong-code-bad-param"        // 000005 instead of 000002
	WrongCodeUnknownInstance Defect = "wrong-code-unknown-instance" // 000005 instead of 000003
	NoLengthCheck            Defect = "no-length-check"             // oversized fields accepted
	LengthCheckNewOnly       Defect = "length-check-new-only"       // field lengths checked only on newInstance
	OrderIDOptional          Defect = "order-id-optional"           // refreshInstance, upgradeInstance and orderNotify accept a missing orderId/orderLineId
	AcceptUnknownActivity    Defect = "accept-unknown-activity"     // unknown activity answered 000000
	LaxTypes                 Defect = "lax-types"                   // objects and arrays where strings belong are accepted
	LaxValues                Defect = "lax-values"                  // any status / expireTime accepted

	// interfaces
	RejectTestFlag Defect = "reject-test-flag" // testFlag "1" refused with 000002
	NoRefresh      Defect = "no-refresh"       // refreshInstance not implemented (000002)
	NoBatchQuery   Defect = "no-batch-query"   // comma-separated ids not split
	ShortBatch     Defect = "short-batch"      // queryInstance's instanceId limited to 100 characters (the table's Max read literally): long batches refused
	QueryListsAll  Defect = "query-lists-all"  // queryInstance lists every live instance, whatever ids were asked for
	NoUsageInfo    Defect = "no-usage-info"    // pay-per-use instances report no usageInfo
	EmptyUsageInfo Defect = "empty-usage-info" // pay-per-use instances report usageInfo: []
	ChangeCheck5   Defect = "change-check-5"   // changeInstanceCheck answers 000005 (not an allowed/refused answer)
	ChangeUnknown  Defect = "change-unknown"   // changeInstanceCheck of an unknown instance answers 000000 (allowed)
	NoQueryOrder   Defect = "no-query-order"   // newInstance never calls Query Order [warning only]
	StrictTrial    Defect = "strict-trial"     // TRIAL_TO_FORMAL refused unless Query Order said trialFlag "1" (correct, not a defect: proves check creates a trial instance)
	StrictIDs      Defect = "strict-ids"       // queryInstance refuses (000002) an id not shaped like its own, inst-<n>-<16 hex> (allowed, not a defect: proves check's batch uses ids of the merchant's shape)

	// asynchronous creation
	AsyncNeverReady Defect = "async-never-ready" // 000004 and never ready

	// the answers
	SlowQuery          Defect = "slow-query"           // queryInstance answers after SlowDelay
	EncryptRawKey      Defect = "encrypt-raw-key"      // AES key = the access key bytes, not the SHA1PRNG-derived key
	CredentialTooLong  Defect = "credential-too-long"  // encrypted password longer than 128 characters
	DropInstanceID     Defect = "drop-instance-id"     // newInstance answer without instanceId
	NumericResultCode  Defect = "numeric-result-code"  // resultCode as a JSON number
	LongResultMsg      Defect = "long-result-msg"      // resultMsg over 255 characters
	BadBodySign        Defect = "bad-body-sign"        // Body-Sign computed with another key
	BodySignNotifyKey  Defect = "body-sign-notify-key" // every Body-Sign computed with the general (orderNotify) key
	NoBodySign         Defect = "no-body-sign"         // no Body-Sign header [warning only]
	UnquotedBodySign   Defect = "unquoted-body-sign"   // Body-Sign parameters without quotes [warning only]
	HugeQuery          Defect = "huge-query"           // queryInstance answers are padded past 1 MiB
	IVSymbols          Defect = "iv-symbols"           // credential iv with characters outside [A-Za-z0-9] (allowed) [warning only]
	Redirect           Defect = "redirect"             // every call is redirected (307) to another path that answers it
	HTTP500OnError     Defect = "http-500-on-error"    // error answers with HTTP 500 [warning only]
	HTTPAccepted       Defect = "http-202"             // every answer with HTTP 202
	NonJSONQuery       Defect = "non-json-query"       // queryInstance answers plain text
	UnescapedMemo      Defect = "unescaped-memo"       // memo with raw UTF-8 Chinese
	ReleasedStillShown Defect = "released-still-shown" // a released instance is still listed [warning only]
)

// Defects lists every defect.
func Defects() []Defect {
	return []Defect{NotIdempotent, RacyIdempotency, IdemOrderOnly, OneInstance, OneDebugInstance, ReleaseNotIdempotent, FreezeNotIdempotent, UpgradeNotIdempotent,
		RefreshNotIdempotent, RenewOnce, UpgradeOnce, FreezeDeletes, ReleaseFrozenRefused, RenewFrozenRefused, AcceptBadSignature, IgnoreTimestamp, AcceptFuture, AcceptReplay,
		FirstJSONValueOnly, ApplyBeforeAuth, NoAuthMutations, NoAuthNewInstance, NoAuthTestFlag, NoAuthOrderNotify, EitherKey,
		SignatureOptional, TimestampOptional, NonceOptional, WideWindow, SecondsNoWindow, ShortNonceCache, NonceSkipTestFlag, MillisOnly, UpperHexOnly, WrongCodeBadParam, WrongCodeUnknownInstance,
		NoLengthCheck, LengthCheckNewOnly, OrderIDOptional, AcceptUnknownActivity, LaxTypes, LaxValues, RejectTestFlag, NoRefresh, NoBatchQuery, ShortBatch, QueryListsAll, NoUsageInfo,
		EmptyUsageInfo, ChangeCheck5, ChangeUnknown, NoQueryOrder, StrictTrial, StrictIDs, NoBodySign, UnquotedBodySign, HugeQuery, IVSymbols, Redirect,
		AsyncNeverReady, SlowQuery, EncryptRawKey, CredentialTooLong, DropInstanceID, NumericResultCode, LongResultMsg,
		BadBodySign, BodySignNotifyKey, HTTP500OnError, HTTPAccepted, NonJSONQuery, UnescapedMemo, ReleasedStillShown}
}

// Config configures the merchant.
type Config struct {
	AccessKey string
	NotifyKey string   // orderNotify key; AccessKey when empty
	Defects   []Defect // switched-on defects
	// Async makes newInstance answer 000004; the instance becomes ready after
	// ReadyAfter queryInstance calls (default 2).
	Async      bool
	ReadyAfter int
	// EncryptType "1" or "2" encrypts userName/password; "" returns them in plaintext.
	EncryptType string
	SlowDelay   time.Duration // SlowQuery's delay (default 6 s)
	// MarketURL, MarketAK and MarketSK: the Query Order endpoint newInstance
	// asks for a new order (none when MarketURL is empty).
	MarketURL, MarketAK, MarketSK string
	Clock                         clock.Clock  // default clock.Real{}
	Logger                        *slog.Logger // default: discard
}

type inst struct {
	id       string
	order    string
	frozen   bool
	released bool
	expire   string
	polls    int
	upgrades map[string]bool
	renewals map[string]bool
	test     bool
	trial    bool // Query Order said trialFlag "1"
}

// Merchant is the defective merchant; it implements http.Handler.
type Merchant struct {
	cfg     Config
	defects map[Defect]bool

	mu        sync.Mutex
	instances map[string]*inst
	byOrder   map[string]string
	nonces    map[string]time.Time
	seq       int
}

// New returns a merchant with cfg's defects.
func New(cfg Config) *Merchant {
	if cfg.NotifyKey == "" {
		cfg.NotifyKey = cfg.AccessKey
	}
	if cfg.ReadyAfter <= 0 {
		cfg.ReadyAfter = 2
	}
	if cfg.SlowDelay <= 0 {
		cfg.SlowDelay = 6 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Merchant{cfg: cfg, defects: map[Defect]bool{}, instances: map[string]*inst{}, byOrder: map[string]string{}, nonces: map[string]time.Time{}}
	for _, d := range cfg.Defects {
		m.defects[d] = true
	}
	return m
}

func (m *Merchant) has(d Defect) bool { return m.defects[d] }

// answer is a response under construction; fields keep their order.
type answer struct {
	code     string
	msg      string
	extra    []any // key, value pairs after resultCode/resultMsg
	httpCode int
	raw      []byte // a verbatim body (non-JSON defect)
}

func (m *Merchant) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m.has(Redirect) && !strings.HasSuffix(r.URL.Path, "/moved") {
		http.Redirect(w, r, r.URL.Path+"/moved?"+r.URL.RawQuery, http.StatusTemporaryRedirect)
		return
	}
	a, activity := m.handle(r)
	body := a.raw
	if body == nil {
		body = m.encode(a)
	}
	key := m.cfg.AccessKey
	if activity == "orderNotify" {
		key = m.cfg.NotifyKey
	}
	if m.has(BadBodySign) {
		key = "not-the-access-key"
	}
	if m.has(BodySignNotifyKey) {
		key = m.cfg.NotifyKey
	}
	switch {
	case m.has(NoBodySign):
	case m.has(UnquotedBodySign):
		w.Header().Set("Body-Sign", strings.ReplaceAll(strings.ReplaceAll(kg.BodySignHeader(key, body), `"`, ""), "= ", "="))
	default:
		w.Header().Set("Body-Sign", kg.BodySignHeader(key, body))
	}
	if a.raw != nil {
		w.Header().Set("Content-Type", "text/plain")
	} else {
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	}
	status := http.StatusOK
	if a.httpCode != 0 {
		status = a.httpCode
	} else if m.has(HTTP500OnError) && a.code != kg.CodeSuccess && a.code != kg.CodeInProgress {
		status = http.StatusInternalServerError
	} else if m.has(HTTPAccepted) {
		status = http.StatusAccepted
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (m *Merchant) encode(a answer) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	if m.has(NumericResultCode) {
		n, _ := strconv.Atoi(a.code)
		fmt.Fprintf(&b, `"resultCode":%d`, n)
	} else {
		fmt.Fprintf(&b, `"resultCode":%q`, a.code)
	}
	msg := a.msg
	if m.has(LongResultMsg) {
		msg += " " + strings.Repeat("x", 300)
	}
	mb, _ := kg.MarshalASCII(msg)
	b.WriteString(`,"resultMsg":`)
	b.Write(mb)
	for i := 0; i+1 < len(a.extra); i += 2 {
		var vb []byte
		if m.has(UnescapedMemo) {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(a.extra[i+1])
			vb = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		} else {
			vb, _ = kg.MarshalASCII(a.extra[i+1])
		}
		fmt.Fprintf(&b, ",%q:", a.extra[i])
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func fail(code, msg string) answer { return answer{code: code, msg: msg} }

func ok(extra ...any) answer { return answer{code: kg.CodeSuccess, msg: "success", extra: extra} }

func (m *Merchant) badParam(msg string) answer {
	if m.has(WrongCodeBadParam) {
		return fail(kg.CodeInternal, "error: "+msg)
	}
	return fail(kg.CodeBadParam, msg)
}

func (m *Merchant) noInstance() answer {
	if m.has(WrongCodeUnknownInstance) {
		return fail(kg.CodeInternal, "lookup failed")
	}
	return fail(kg.CodeNoInstance, "instance does not exist")
}

func (m *Merchant) handle(r *http.Request) (answer, string) {
	if r.Method != http.MethodPost {
		return answer{code: kg.CodeBadParam, msg: "POST only", httpCode: http.StatusMethodNotAllowed}, ""
	}
	var activity string
	a := m.dispatch(r, &activity)
	return a, activity
}

func (m *Merchant) dispatch(r *http.Request, activityOut *string) answer {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return fail(kg.CodeInternal, "cannot read body")
	}
	signed := body
	if m.has(FirstJSONValueOnly) {
		var first json.RawMessage
		if json.NewDecoder(bytes.NewReader(body)).Decode(&first) == nil {
			signed, body = first, first
		}
	}
	if m.has(ApplyBeforeAuth) {
		// Acts on a release first, checks afterwards.
		var f map[string]any
		if json.Unmarshal(body, &f) == nil && f["activity"] == "releaseInstance" {
			if id, _ := f["instanceId"].(string); id != "" {
				m.mu.Lock()
				if in := m.instances[id]; in != nil {
					in.released = true
				}
				m.mu.Unlock()
			}
		}
	}
	activity := ""
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) == nil {
		activity, _ = str(fields["activity"])
	}
	*activityOut = activity
	if msg, okAuth := m.authenticate(r, signed, activity, fields); !okAuth {
		return fail(kg.CodeAuthFailed, msg)
	}
	if fields == nil {
		return m.badParam("body is not a JSON object")
	}
	req, perr := m.parse(fields)
	if perr != "" {
		return m.badParam(perr)
	}
	if req.testFlag == "1" && m.has(RejectTestFlag) {
		return m.badParam("testFlag 1 is not supported")
	}
	switch req.activity {
	case "newInstance":
		return m.newInstance(req)
	case "queryInstance":
		return m.queryInstance(req)
	case "refreshInstance":
		if m.has(NoRefresh) {
			return m.badParam("unsupported activity")
		}
		return m.refreshInstance(req)
	case "updateInstanceStatus":
		return m.updateStatus(req)
	case "releaseInstance":
		return m.release(req)
	case "upgradeInstance":
		return m.upgrade(req)
	case "changeInstanceCheck":
		return m.changeCheck(req)
	case "orderNotify":
		return ok()
	}
	if m.has(AcceptUnknownActivity) {
		return ok()
	}
	return m.badParam("unknown activity " + req.activity)
}

// authenticate verifies the V2 signature, the window and the nonce.
func (m *Merchant) authenticate(r *http.Request, body []byte, activity string, fields map[string]json.RawMessage) (string, bool) {
	if m.has(AcceptBadSignature) {
		return "", true
	}
	switch {
	case m.has(NoAuthMutations) && (activity == "refreshInstance" || activity == "updateInstanceStatus" || activity == "upgradeInstance"),
		m.has(NoAuthNewInstance) && activity == "newInstance",
		m.has(NoAuthOrderNotify) && activity == "orderNotify",
		m.has(NoAuthTestFlag) && string(fields["testFlag"]) == `"1"`:
		return "", true
	}
	q := r.URL.Query()
	sig, ts, nonce := q.Get("signature"), q.Get("timestamp"), q.Get("nonce")
	key := m.cfg.AccessKey
	if activity == "orderNotify" {
		key = m.cfg.NotifyKey
	}
	now := m.cfg.Clock.Now()
	window := kg.DefaultWindow
	if m.has(WideWindow) {
		window = 9 * time.Minute
	}
	if t, variant, err := kg.ParseTimestamp(ts); err == nil {
		if m.has(MillisOnly) && variant != kg.VariantMillis {
			return "timestamp must be milliseconds", false
		}
		if m.has(IgnoreTimestamp) || (m.has(AcceptFuture) && t.After(now)) || (m.has(SecondsNoWindow) && variant == kg.VariantSeconds) {
			now = t
		}
	}
	if m.has(UpperHexOnly) && sig != strings.ToUpper(sig) {
		return "signature must be upper-case hex", false
	}
	lax := (sig == "" && m.has(SignatureOptional)) || (ts == "" && m.has(TimestampOptional)) || (nonce == "" && m.has(NonceOptional))
	if lax {
		// The defects: a missing parameter skips its own check.
		if sig != "" && !strings.EqualFold(sig, kg.SignV2(key, nonce, ts, body)) {
			return "signature does not match", false
		}
		if ts != "" {
			t, _, err := kg.ParseTimestamp(ts)
			if err != nil || t.Sub(now) > window || now.Sub(t) > window {
				return "timestamp outside the window", false
			}
		}
		if nonce == "" {
			return "", true
		}
	} else if keys := []string{key}; m.has(EitherKey) {
		if _, _, err := kg.VerifyV2(append(keys, m.cfg.AccessKey, m.cfg.NotifyKey), sig, nonce, ts, body, now, window); err != nil {
			return err.Error(), false
		}
	} else if _, _, err := kg.VerifyV2(keys, sig, nonce, ts, body, now, window); err != nil {
		return err.Error(), false
	}
	if m.has(AcceptReplay) || (m.has(NonceSkipTestFlag) && string(fields["testFlag"]) == `"1"`) {
		return "", true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := 10 * time.Minute
	if m.has(ShortNonceCache) {
		keep = time.Second
	}
	cutoff := m.cfg.Clock.Now().Add(-keep)
	for n, seen := range m.nonces {
		if seen.Before(cutoff) {
			delete(m.nonces, n)
		}
	}
	if _, seen := m.nonces[nonce]; seen {
		return "nonce already used", false
	}
	m.nonces[nonce] = m.cfg.Clock.Now()
	return "", true
}

type request struct {
	activity, testFlag                    string
	businessID, orderID, orderLineID      string
	instanceID, status, scene, expireTime string
	productInfo                           json.RawMessage
}

func str(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// parse validates the fields of the activity: presence, type and length.
func (m *Merchant) parse(f map[string]json.RawMessage) (request, string) {
	var req request
	activity, _ := str(f["activity"])
	get := func(name string, mandatory bool, max int, dst *string) string {
		raw, present := f[name]
		if !present || string(raw) == "null" {
			if mandatory {
				return name + " is missing"
			}
			return ""
		}
		s, isStr := str(raw)
		if !isStr {
			if len(raw) > 0 && (raw[0] == '{' || raw[0] == '[') && !m.has(LaxTypes) {
				return name + " must be a string"
			}
			s = strings.Trim(string(raw), `"`) // numbers and booleans are accepted as strings (README policy 7)
		}
		lengthChecked := !m.has(NoLengthCheck) && (!m.has(LengthCheckNewOnly) || activity == "newInstance" || name == "activity" || name == "testFlag")
		if utf8.RuneCountInString(s) > max && lengthChecked {
			return fmt.Sprintf("%s is longer than %d", name, max)
		}
		if mandatory && s == "" {
			return name + " is empty"
		}
		*dst = s
		return ""
	}
	if e := get("activity", true, 32, &req.activity); e != "" {
		return req, e
	}
	if e := get("testFlag", false, 2, &req.testFlag); e != "" {
		return req, e
	}
	if req.testFlag != "" && req.testFlag != "0" && req.testFlag != "1" && !m.has(LaxValues) {
		return req, "testFlag must be 0 or 1"
	}
	var errs []string
	add := func(e string) {
		if e != "" {
			errs = append(errs, e)
		}
	}
	switch req.activity {
	case "newInstance":
		add(get("businessId", true, 64, &req.businessID))
		add(get("orderId", true, 64, &req.orderID))
		add(get("orderLineId", true, 64, &req.orderLineID))
	case "queryInstance":
		max := 64*100 + 99
		if m.has(ShortBatch) {
			max = 100
		}
		add(get("instanceId", true, max, &req.instanceID))
	case "refreshInstance":
		add(get("orderId", !m.has(OrderIDOptional), 64, &req.orderID))
		add(get("orderLineId", !m.has(OrderIDOptional), 64, &req.orderLineID))
		add(get("instanceId", true, 64, &req.instanceID))
		add(get("scene", true, 64, &req.scene))
		add(get("expireTime", true, 20, &req.expireTime))
		if len(errs) == 0 && !m.has(LaxValues) {
			if _, err := kg.ParseExpireTime(req.expireTime); err != nil {
				add("expireTime: " + err.Error())
			}
		}
	case "updateInstanceStatus":
		add(get("instanceId", true, 64, &req.instanceID))
		add(get("status", true, 32, &req.status))
		if len(errs) == 0 && req.status != "FREEZE" && req.status != "UNFREEZE" && !m.has(LaxValues) {
			add("status must be FREEZE or UNFREEZE")
		}
	case "releaseInstance":
		add(get("instanceId", true, 64, &req.instanceID))
		var o string
		add(get("orderId", false, 64, &o))
	case "upgradeInstance":
		add(get("instanceId", true, 64, &req.instanceID))
		add(get("orderId", !m.has(OrderIDOptional), 64, &req.orderID))
		add(get("orderLineId", !m.has(OrderIDOptional), 64, &req.orderLineID))
	case "changeInstanceCheck":
		add(get("instanceId", true, 64, &req.instanceID))
		req.productInfo = f["productInfo"]
		if len(req.productInfo) == 0 {
			add("productInfo is missing")
		}
	case "orderNotify":
		add(get("orderId", !m.has(OrderIDOptional), 64, &req.orderID))
		add(get("orderLineId", !m.has(OrderIDOptional), 64, &req.orderLineID))
	}
	if len(errs) > 0 {
		return req, errs[0]
	}
	return req, ""
}

// ownID reports whether id has the shape newID gives: inst-<n>-<16 hex>.
func ownID(id string) bool {
	rest, ok := strings.CutPrefix(id, "inst-")
	if !ok {
		return false
	}
	n, h, ok := strings.Cut(rest, "-")
	if _, err := strconv.Atoi(n); !ok || err != nil || len(h) != 16 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

func (m *Merchant) newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	m.seq++
	return fmt.Sprintf("inst-%d-%s", m.seq, hex.EncodeToString(b[:]))
}

func (m *Merchant) newInstance(req request) answer {
	key := req.orderID + "/" + req.orderLineID
	if m.has(IdemOrderOnly) {
		key = req.orderID
	}
	if m.has(OneInstance) {
		key = "the one instance"
	}
	if m.has(OneDebugInstance) && req.testFlag == "1" {
		key = "sandbox"
	}
	m.mu.Lock()
	id, exists := m.byOrder[key]
	m.mu.Unlock()
	trial := false
	if !exists && m.cfg.MarketURL != "" && !m.has(NoQueryOrder) {
		var err error
		if trial, err = m.queryOrder(req.orderID, req.orderLineID); err != nil {
			return fail(kg.CodeInternal, "query order: "+err.Error())
		}
	}
	if m.has(RacyIdempotency) {
		time.Sleep(20 * time.Millisecond) // provisioning work between the check and the insert
	}
	m.mu.Lock()
	if !exists || m.has(NotIdempotent) {
		if !m.has(RacyIdempotency) {
			id, exists = m.byOrder[key]
		}
		if !exists || m.has(NotIdempotent) {
			id = m.newID()
			m.instances[id] = &inst{id: id, order: key, upgrades: map[string]bool{}, renewals: map[string]bool{}, test: req.testFlag == "1", trial: trial}
			m.byOrder[key] = id
		}
	}
	m.mu.Unlock()
	a := ok("instanceId", id)
	if m.cfg.Async || m.has(AsyncNeverReady) {
		a.code, a.msg = kg.CodeInProgress, "provisioning"
	}
	if m.has(DropInstanceID) {
		a.extra = nil
	}
	return a
}

func (m *Merchant) queryInstance(req request) answer {
	if m.has(SlowQuery) {
		time.Sleep(m.cfg.SlowDelay)
	}
	if m.has(NonJSONQuery) {
		return answer{code: kg.CodeSuccess, raw: []byte("OK")}
	}
	ids := []string{req.instanceID}
	if !m.has(NoBatchQuery) {
		ids = strings.Split(req.instanceID, ",")
	}
	if len(ids) > 100 {
		return m.badParam("at most 100 instance ids")
	}
	if m.has(StrictIDs) {
		for _, id := range ids {
			if !ownID(strings.TrimSpace(id)) {
				return m.badParam("instanceId " + id + " is not an instance id of this merchant")
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.has(QueryListsAll) {
		asked := map[string]bool{}
		for _, id := range ids {
			asked[strings.TrimSpace(id)] = true
		}
		for id := range m.instances {
			if !asked[id] {
				ids = append(ids, id)
			}
		}
	}
	var infos []any
	pending := false
	for _, id := range ids {
		in := m.instances[strings.TrimSpace(id)]
		if in == nil || (in.released && !m.has(ReleasedStillShown) && !(m.has(OneDebugInstance) && in.test)) {
			continue
		}
		if m.cfg.Async || m.has(AsyncNeverReady) {
			in.polls++
			if in.polls < m.cfg.ReadyAfter || m.has(AsyncNeverReady) {
				pending = true
				continue
			}
		}
		infos = append(infos, m.info(in))
	}
	if len(infos) == 0 {
		if pending {
			return fail(kg.CodeInProgress, "provisioning")
		}
		return m.noInstance()
	}
	a := ok("info", infos)
	if m.has(HugeQuery) {
		a.extra = append(a.extra, "padding", strings.Repeat("x", 1500000))
	}
	if m.cfg.EncryptType != "" {
		a.extra = append([]any{"encryptType", m.cfg.EncryptType}, a.extra...)
	}
	return a
}

func (m *Merchant) info(in *inst) map[string]any {
	user, pass := "admin@"+in.id, "Init-"+in.id[len(in.id)-6:]
	if m.cfg.EncryptType != "" {
		user, pass = m.encrypt(user, false), m.encrypt(pass, m.has(CredentialTooLong))
	}
	info := map[string]any{
		"instanceId": in.id,
		"appInfo": map[string]any{
			"frontEndUrl": "https://app.example.com/" + in.id,
			"adminUrl":    "https://app.example.com/admin",
			"userName":    user,
			"password":    pass,
			"memo":        "欢迎使用 souk (welcome)",
		},
	}
	if m.has(EmptyUsageInfo) {
		info["usageInfo"] = []any{}
	} else if !m.has(NoUsageInfo) {
		info["usageInfo"] = []map[string]any{{"usageValue": 12.5, "statisticalTime": m.cfg.Clock.Now().UTC().Format("20060102150405") + "000"}}
	}
	return info
}

// encrypt produces iv + base64(AES-CBC) of plain, with the defects' twists.
func (m *Merchant) encrypt(plain string, tooLong bool) string {
	if !m.has(EncryptRawKey) && !tooLong && !m.has(IVSymbols) {
		v, err := kg.EncryptCredential(m.cfg.AccessKey, m.cfg.EncryptType, plain, rand.Reader)
		if err != nil {
			return "encryption-failed"
		}
		return v
	}
	bits := 256
	if m.cfg.EncryptType == "2" {
		bits = 128
	}
	key, err := kg.SHA1PRNGKey(m.cfg.AccessKey, bits)
	if err != nil {
		return "encryption-failed"
	}
	if m.has(EncryptRawKey) {
		key = make([]byte, bits/8)
		copy(key, m.cfg.AccessKey)
	}
	if tooLong {
		plain += strings.Repeat("-padding", 12)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "encryption-failed"
	}
	iv := "0123456789abcdef"
	if m.has(IVSymbols) {
		iv = "!@#$%^&*()_-=+[]" // a random 16-character string, not only [A-Za-z0-9]
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	buf := append([]byte(plain), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(block, []byte(iv)).CryptBlocks(buf, buf)
	return iv + base64.StdEncoding.EncodeToString(buf)
}

// live returns the instance for id unless it does not exist or was released.
func (m *Merchant) live(id string) *inst {
	in := m.instances[id]
	if in == nil || (in.released && !(m.has(OneDebugInstance) && in.test)) {
		return nil
	}
	return in
}

func (m *Merchant) refreshInstance(req request) answer {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.live(req.instanceID)
	if in == nil {
		return m.noInstance()
	}
	if m.has(RenewFrozenRefused) && in.frozen {
		return fail(kg.CodeInternal, "a frozen instance cannot be renewed: unfreeze it first")
	}
	if m.has(StrictTrial) && req.scene == "TRIAL_TO_FORMAL" && !in.trial {
		return m.badParam("the instance was not bought as a trial: nothing to convert")
	}
	if m.has(RefreshNotIdempotent) && in.renewals[req.orderID] {
		return fail(kg.CodeInternal, "renewal already applied")
	}
	if m.has(RenewOnce) && len(in.renewals) > 0 && !in.renewals[req.orderID] {
		return fail(kg.CodeInternal, "the instance was already renewed")
	}
	in.renewals[req.orderID] = true
	in.expire = req.expireTime
	return ok()
}

func (m *Merchant) updateStatus(req request) answer {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.live(req.instanceID)
	if in == nil {
		return m.noInstance()
	}
	freeze := req.status == "FREEZE"
	if m.has(FreezeNotIdempotent) && in.frozen == freeze {
		return fail(kg.CodeInternal, "instance is already in that state")
	}
	if freeze && m.has(FreezeDeletes) {
		delete(m.instances, in.id)
		return ok()
	}
	in.frozen = freeze
	return ok()
}

func (m *Merchant) release(req request) answer {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.instances[req.instanceID]
	if in == nil {
		return m.noInstance()
	}
	if in.released && m.has(ReleaseNotIdempotent) {
		return m.noInstance()
	}
	if in.frozen && !in.released && m.has(ReleaseFrozenRefused) {
		return fail(kg.CodeInternal, "a frozen instance cannot be released: unfreeze it first")
	}
	in.released = true
	return ok()
}

func (m *Merchant) upgrade(req request) answer {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.live(req.instanceID)
	if in == nil {
		return m.noInstance()
	}
	if m.has(UpgradeNotIdempotent) && in.upgrades[req.orderID] {
		return fail(kg.CodeInternal, "upgrade already applied")
	}
	if m.has(UpgradeOnce) && len(in.upgrades) > 0 && !in.upgrades[req.orderID] {
		return fail(kg.CodeInternal, "the instance was already upgraded")
	}
	in.upgrades[req.orderID] = true
	return ok()
}

func (m *Merchant) changeCheck(req request) answer {
	m.mu.Lock()
	in := m.live(req.instanceID)
	m.mu.Unlock()
	if in == nil {
		if m.has(ChangeUnknown) {
			return ok()
		}
		return m.noInstance()
	}
	raw := req.productInfo
	if s, isStr := str(raw); isStr {
		raw = json.RawMessage(s)
	}
	var pi struct {
		ProductID string `json:"productId"`
	}
	if json.Unmarshal(raw, &pi) != nil || pi.ProductID == "" {
		return m.badParam("productInfo.productId is missing")
	}
	if m.has(ChangeCheck5) {
		return fail(kg.CodeInternal, "changeInstanceCheck is not implemented")
	}
	return ok()
}

// queryOrder asks the Query Order open API for an order line and reports
// whether it is a trial (saas-v2.md §5.1).
func (m *Merchant) queryOrder(orderID, lineID string) (bool, error) {
	q, err := kg.QueryOrderQuery(orderID, lineID)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequest(http.MethodGet, strings.TrimRight(m.cfg.MarketURL, "/")+"/api/mkp-openapi-public/global/v1/order/query?"+q, nil)
	if err != nil {
		return false, err
	}
	if err := kg.SignAPIG(req, nil, m.cfg.MarketAK, m.cfg.MarketSK, m.cfg.Clock.Now()); err != nil {
		return false, err
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, err
	}
	o, err := kg.DecodeQueryOrderResponse(body)
	if err != nil {
		return false, err
	}
	if o.ResultCode != kg.MKTSuccess || o.OrderInfo == nil {
		return false, fmt.Errorf("query order answered %s %s", o.ResultCode, o.ResultMsg)
	}
	for _, l := range o.OrderInfo.OrderLine {
		if l.OrderLineID == lineID {
			return l.TrialFlag == "1", nil
		}
	}
	return false, fmt.Errorf("order %s has no line %s", orderID, lineID)
}

// SetMarket points newInstance at a Query Order endpoint (before the first
// request; for tests that start the endpoint after the merchant).
func (m *Merchant) SetMarket(url, ak, sk string) {
	m.cfg.MarketURL, m.cfg.MarketAK, m.cfg.MarketSK = url, ak, sk
}

// Instances reports how many instances exist (released ones included).
func (m *Merchant) Instances() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.instances)
}

var _ http.Handler = (*Merchant)(nil)
