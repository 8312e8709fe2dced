package kg

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultWindow is the documented tolerance between a request's timestamp and
// the receiver's clock (saas-v2.md §2.2, joint-kit.md §6.1).
const DefaultWindow = 60 * time.Second

// Timestamp variants reported by the verifiers.
const (
	VariantMillis  = "ms" // 13-digit Unix milliseconds
	VariantSeconds = "s"  // 10-digit Unix seconds
)

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// SignV2 computes the V2 basic-interface request signature (saas-v2.md §2.2):
//
//	payloadMac = lower(hex(HMAC-SHA256(accessKey, body)))
//	signature  = hex(HMAC-SHA256(accessKey, accessKey + nonce + timestamp + payloadMac))
//
// body is the exact bytes sent. The result is upper-case hex, as in
// KooGallery's examples.
func SignV2(accessKey, nonce, timestamp string, body []byte) string {
	return strings.ToUpper(hex.EncodeToString(signV2(accessKey, nonce, timestamp, body)))
}

func signV2(accessKey, nonce, timestamp string, body []byte) []byte {
	key := []byte(accessKey)
	payloadMac := hex.EncodeToString(hmacSHA256(key, body))
	canonical := make([]byte, 0, len(accessKey)+len(nonce)+len(timestamp)+len(payloadMac))
	canonical = append(canonical, accessKey...)
	canonical = append(canonical, nonce...)
	canonical = append(canonical, timestamp...)
	canonical = append(canonical, payloadMac...)
	return hmacSHA256(key, canonical)
}

// ParseTimestamp reads a protocol timestamp: 13 decimal digits are Unix
// milliseconds (variant "ms"), 10 digits Unix seconds (variant "s"). Anything
// else is an error naming the problem.
func ParseTimestamp(ts string) (t time.Time, variant string, err error) {
	if !isDigits(ts) {
		return time.Time{}, "", errors.New("timestamp must be decimal digits")
	}
	// The length first: 10 or 13 digits always fit an int64, so no error
	// quotes the value (a 300-digit timestamp made a 380-character message).
	if len(ts) != 13 && len(ts) != 10 {
		return time.Time{}, "", fmt.Errorf("timestamp must have 13 (ms) or 10 (s) digits, got %d", len(ts))
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("timestamp: %w", err)
	}
	if len(ts) == 13 {
		return time.UnixMilli(n).UTC(), VariantMillis, nil
	}
	return time.Unix(n, 0).UTC(), VariantSeconds, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkWindow parses ts and checks |now − ts| ≤ window (DefaultWindow when
// window ≤ 0).
func checkWindow(ts string, now time.Time, window time.Duration) (string, error) {
	if window <= 0 {
		window = DefaultWindow
	}
	t, variant, err := ParseTimestamp(ts)
	if err != nil {
		return "", &AuthError{Reason: err.Error()}
	}
	d := now.Sub(t)
	if d > window {
		return "", &AuthError{Reason: fmt.Sprintf("timestamp is stale (%s old, window %s)", d.Truncate(time.Millisecond), window)}
	}
	if -d > window {
		return "", &AuthError{Reason: fmt.Sprintf("timestamp is in the future (%s ahead, window %s)", (-d).Truncate(time.Millisecond), window)}
	}
	return variant, nil
}

// decodeHexSig decodes a hex signature case-insensitively; ok is false when
// it is not 32 bytes of hex.
func decodeHexSig(sig string) ([]byte, bool) {
	if len(sig) != 2*sha256.Size {
		return nil, false
	}
	b, err := hex.DecodeString(sig) // accepts both cases
	if err != nil {
		return nil, false
	}
	return b, true
}

// VerifyV2 checks a V2 basic-interface request signature over the raw body
// bytes (README policy 1). timestamp may be 13-digit milliseconds or 10-digit
// seconds and must lie within ±window of now; the hex signature is compared
// case-insensitively and in constant time against every key in keys (several
// keys allow rotation). A window ≤ 0 means DefaultWindow. It returns the index of the key that matched and the
// timestamp variant ("ms" or "s"). Any failure is a *AuthError. Replay
// protection (the nonce cache) is the caller's job.
func VerifyV2(keys []string, signature, nonce, timestamp string, body []byte, now time.Time, window time.Duration) (keyIndex int, variant string, err error) {
	if signature == "" {
		return -1, "", &AuthError{Reason: "signature is missing"}
	}
	if nonce == "" {
		return -1, "", &AuthError{Reason: "nonce is missing"}
	}
	if timestamp == "" {
		return -1, "", &AuthError{Reason: "timestamp is missing"}
	}
	variant, err = checkWindow(timestamp, now, window)
	if err != nil {
		return -1, "", err
	}
	got, ok := decodeHexSig(signature)
	if !ok {
		return -1, "", &AuthError{Reason: "signature is not 64 hex characters"}
	}
	if len(keys) == 0 {
		return -1, "", &AuthError{Reason: "no access key configured"}
	}
	match := matchKey(keys, got, func(k string) []byte { return signV2(k, nonce, timestamp, body) })
	if match < 0 {
		return -1, "", &AuthError{Reason: "signature does not match"}
	}
	return match, variant, nil
}

// matchKey returns the index of the first non-empty key whose MAC (mac) is
// got, or -1. Every key is tried, each compared in constant time, so the
// time taken does not depend on which one matched (rotation: several keys).
func matchKey(keys []string, got []byte, mac func(key string) []byte) int {
	match := -1
	for i, k := range keys {
		if k == "" {
			continue
		}
		if subtle.ConstantTimeCompare(mac(k), got) == 1 && match < 0 {
			match = i
		}
	}
	return match
}

// SignedURL returns the URL KooGallery POSTs a basic-interface call to: base
// (the production address, used verbatim, existing query kept) with
// signature, timestamp (Unix ms of now) and nonce appended.
func SignedURL(base, accessKey string, body []byte, now time.Time, nonce string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("kg: production address: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("kg: production address %q: scheme must be http or https", base)
	}
	if u.Host == "" {
		return "", fmt.Errorf("kg: production address %q: host is missing", base)
	}
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	q := "signature=" + SignV2(accessKey, nonce, ts, body) +
		"&timestamp=" + ts + "&nonce=" + url.QueryEscape(nonce)
	if u.RawQuery != "" {
		u.RawQuery += "&" + q
	} else {
		u.RawQuery = q
	}
	u.Fragment = ""
	return u.String(), nil
}

// BodySignHeader returns the V1-style Body-Sign response header value
// (saas-v2.md §2.3): sign_type="HMAC-SHA256", signature= "<base64(HMAC-SHA256(accessKey, body))>".
func BodySignHeader(accessKey string, body []byte) string {
	return `sign_type="HMAC-SHA256", signature= "` +
		base64.StdEncoding.EncodeToString(hmacSHA256([]byte(accessKey), body)) + `"`
}

// ParseBodySignHeader splits a Body-Sign header into its sign_type and
// signature values. Whitespace around names, '=' and values is tolerated and
// quotes are optional.
func ParseBodySignHeader(header string) (signType, signature string, err error) {
	if len(header) > 4096 {
		return "", "", &AuthError{Reason: "Body-Sign header is too long"}
	}
	for _, part := range strings.Split(header, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return "", "", &AuthError{Reason: fmt.Sprintf("Body-Sign header: %q has no '='", part)}
		}
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.TrimSpace(value)
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		} else if strings.ContainsRune(value, '"') {
			return "", "", &AuthError{Reason: fmt.Sprintf("Body-Sign header: unbalanced quotes in %s", name)}
		}
		switch name {
		case "sign_type":
			signType = value
		case "signature":
			signature = value
		}
	}
	if signature == "" {
		return "", "", &AuthError{Reason: "Body-Sign header has no signature"}
	}
	if signType == "" {
		return "", "", &AuthError{Reason: "Body-Sign header has no sign_type"}
	}
	return signType, signature, nil
}

// VerifyBodySignHeader checks a Body-Sign header against the exact body bytes.
// Failures are *AuthError.
func VerifyBodySignHeader(accessKey, header string, body []byte) error {
	signType, signature, err := ParseBodySignHeader(header)
	if err != nil {
		return err
	}
	if !strings.EqualFold(signType, "HMAC-SHA256") {
		return &AuthError{Reason: fmt.Sprintf("Body-Sign sign_type %q is not HMAC-SHA256", signType)}
	}
	got, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || len(got) != sha256.Size {
		return &AuthError{Reason: "Body-Sign signature is not base64 of 32 bytes"}
	}
	if !hmac.Equal(got, hmacSHA256([]byte(accessKey), body)) {
		return &AuthError{Reason: "Body-Sign signature does not match"}
	}
	return nil
}

// AuthTokenV1 computes the V1 authToken (saas-v2.md §9, joint-kit.md §6.3):
// base64(HMAC-SHA256(accessKey + timeStamp, "k1=v1&k2=v2…")) over every
// parameter except authToken, sorted by name. Values are used as given
// (already URL-decoded). Parameters with an empty value are included.
func AuthTokenV1(accessKey, timeStamp string, params map[string]string) string {
	return base64.StdEncoding.EncodeToString(hmacSHA256([]byte(accessKey+timeStamp), []byte(V1StringToSign(params))))
}

// V1StringToSign returns the sorted "k=v&…" string AuthTokenV1 signs.
func V1StringToSign(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k == "authToken" {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(params[k])
	}
	return b.String()
}

// VerifyAuthTokenV1 checks a V1 authToken in constant time. Failures are *AuthError.
func VerifyAuthTokenV1(accessKey, timeStamp, authToken string, params map[string]string) error {
	got, err := base64.StdEncoding.DecodeString(authToken)
	if err != nil || len(got) != sha256.Size {
		return &AuthError{Reason: "authToken is not base64 of 32 bytes"}
	}
	want := hmacSHA256([]byte(accessKey+timeStamp), []byte(V1StringToSign(params)))
	if !hmac.Equal(got, want) {
		return &AuthError{Reason: "authToken does not match"}
	}
	return nil
}

// UsageSignature computes the usage-push `signature` header (saas-v2.md §5.2):
// base64(HMAC-SHA256(accessKey, "ts=" + ts + "&nonce=" + nonce + "&body=" + body)).
// body must be the exact bytes sent; build it with CanonicalJSON so that its
// keys are naturally sorted.
func UsageSignature(accessKey, ts, nonce string, body []byte) string {
	msg := make([]byte, 0, len(ts)+len(nonce)+len(body)+16)
	msg = append(msg, "ts="...)
	msg = append(msg, ts...)
	msg = append(msg, "&nonce="...)
	msg = append(msg, nonce...)
	msg = append(msg, "&body="...)
	msg = append(msg, body...)
	return base64.StdEncoding.EncodeToString(hmacSHA256([]byte(accessKey), msg))
}

// VerifyUsageSignature checks a usage-push signature over the raw body, then
// over the body re-serialized with sorted keys (CanonicalJSON). It returns the
// variant that matched ("raw" or "sorted"). Timestamp checks are the caller's.
func VerifyUsageSignature(accessKey, signature, ts, nonce string, body []byte) (variant string, err error) {
	return NewUsageVerifier(signature, ts, nonce, body).Verify(accessKey)
}

// UsageVerifier checks one usage push against several candidate keys (the
// push names no seller): the sorted re-serialization of the body, which
// costs a parse, is made at most once, and only when a key fails the raw
// reading.
type UsageVerifier struct {
	got             []byte
	ts, nonce       string
	body, canon     []byte
	badSig, canoned bool
}

// NewUsageVerifier prepares the check of a push's signature header.
func NewUsageVerifier(signature, ts, nonce string, body []byte) *UsageVerifier {
	got, err := base64.StdEncoding.DecodeString(signature)
	return &UsageVerifier{got: got, badSig: err != nil || len(got) != sha256.Size, ts: ts, nonce: nonce, body: body}
}

// Verify checks the signature with accessKey, raw body first.
func (v *UsageVerifier) Verify(accessKey string) (variant string, err error) {
	if v.badSig {
		return "", &AuthError{Reason: "signature is not base64 of 32 bytes"}
	}
	want, _ := base64.StdEncoding.DecodeString(UsageSignature(accessKey, v.ts, v.nonce, v.body))
	if hmac.Equal(v.got, want) {
		return KitVariantRaw, nil
	}
	if !v.canoned {
		v.canoned = true
		if c, err := CanonicalJSON(v.body); err == nil {
			v.canon = c
		}
	}
	if v.canon != nil {
		want, _ = base64.StdEncoding.DecodeString(UsageSignature(accessKey, v.ts, v.nonce, v.canon))
		if hmac.Equal(v.got, want) {
			return KitVariantSorted, nil
		}
	}
	return "", &AuthError{Reason: "signature does not match"}
}
