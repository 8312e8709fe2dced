package kg

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// APIG SDK-HMAC-SHA256 constants (joint-kit.md §8.3, the Huawei Cloud SDK signer).
const (
	APIGAlgorithm     = "SDK-HMAC-SHA256"
	APIGDateHeader    = "X-Sdk-Date"
	APIGDateFormat    = "20060102T150405Z"
	APIGContentSHA256 = "X-Sdk-Content-Sha256"
	apigUnsigned      = "UNSIGNED-PAYLOAD"
	// DefaultAPIGWindow is the clock skew souk tolerates on APIG-signed calls
	// (Huawei does not document the gateway's; 15 minutes is the APIG norm).
	DefaultAPIGWindow = 15 * time.Minute
)

// SignAPIG signs r the way the Huawei Cloud SDK signer does: it sets
// X-Sdk-Date (t in UTC), fills r.Host from the URL when empty, and sets
// Authorization: SDK-HMAC-SHA256 Access=ak, SignedHeaders=…, Signature=….
// The signed headers are host, x-sdk-date and every header already on r
// except Content-Type and names containing '_' (the SDK's rule). body must be
// the exact bytes that will be sent.
func SignAPIG(r *http.Request, body []byte, ak, sk string, t time.Time) error {
	if ak == "" {
		return fmt.Errorf("kg: APIG sign: %w", &FieldError{Field: "ak", Reason: "is empty"})
	}
	if sk == "" {
		return fmt.Errorf("kg: APIG sign: %w", &FieldError{Field: "sk", Reason: "is empty"})
	}
	if r.URL == nil {
		return fmt.Errorf("kg: APIG sign: request has no URL")
	}
	if r.Host == "" {
		r.Host = r.URL.Host
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Header.Del("Authorization")
	date := t.UTC().Format(APIGDateFormat)
	r.Header.Set(APIGDateHeader, date)

	seen := map[string]bool{"host": true}
	signed := []string{"host"}
	for name := range r.Header {
		lower := strings.ToLower(name)
		if strings.HasPrefix(lower, "content-type") || strings.Contains(name, "_") || seen[lower] {
			continue
		}
		seen[lower] = true
		signed = append(signed, lower)
	}
	sort.Strings(signed)
	sig := apigSignature(r, hexSHA256(body), signed, date, sk)
	r.Header.Set("Authorization", APIGAlgorithm+" Access="+ak+", SignedHeaders="+strings.Join(signed, ";")+", Signature="+hex.EncodeToString(sig))
	return nil
}

// APIGAuthorization is a parsed SDK-HMAC-SHA256 Authorization header.
type APIGAuthorization struct {
	Access        string
	SignedHeaders []string
	Signature     string
}

// ParseAPIGAuthorization parses "SDK-HMAC-SHA256 Access=…, SignedHeaders=a;b, Signature=…".
// Failures are *AuthError.
func ParseAPIGAuthorization(h string) (APIGAuthorization, error) {
	var a APIGAuthorization
	if len(h) > 8192 {
		return a, &AuthError{Reason: "Authorization header is too long"}
	}
	alg, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || alg != APIGAlgorithm {
		return a, &AuthError{Reason: "Authorization is not " + APIGAlgorithm}
	}
	for _, part := range strings.Split(rest, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return a, &AuthError{Reason: fmt.Sprintf("Authorization: %q has no '='", part)}
		}
		switch strings.TrimSpace(k) {
		case "Access":
			a.Access = strings.TrimSpace(v)
		case "SignedHeaders":
			for _, s := range strings.Split(strings.TrimSpace(v), ";") {
				if s == "" {
					return a, &AuthError{Reason: "Authorization: empty name in SignedHeaders"}
				}
				a.SignedHeaders = append(a.SignedHeaders, s)
			}
		case "Signature":
			a.Signature = strings.TrimSpace(v)
		default:
			return a, &AuthError{Reason: fmt.Sprintf("Authorization: unknown parameter %q", strings.TrimSpace(k))}
		}
	}
	switch {
	case a.Access == "":
		return a, &AuthError{Reason: "Authorization: Access is missing"}
	case len(a.SignedHeaders) == 0:
		return a, &AuthError{Reason: "Authorization: SignedHeaders is missing"}
	case a.Signature == "":
		return a, &AuthError{Reason: "Authorization: Signature is missing"}
	}
	return a, nil
}

// VerifyAPIG checks an SDK-HMAC-SHA256 signed request (as sent by the Huawei
// Cloud SDKs or SignAPIG) with the secret key lookup(ak) returns: the
// X-Sdk-Date header must be within ±window of now and signed, and the
// signature must match the canonical request rebuilt from r and the exact
// body bytes. It returns the access key. Failures are *AuthError. A window
// ≤ 0 means DefaultAPIGWindow.
func VerifyAPIG(r *http.Request, body []byte, lookup func(ak string) (sk string, ok bool), now time.Time, window time.Duration) (ak string, err error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", &AuthError{Reason: "Authorization header is missing"}
	}
	auth, err := ParseAPIGAuthorization(h)
	if err != nil {
		return "", err
	}
	date := r.Header.Get(APIGDateHeader)
	if date == "" {
		return "", &AuthError{Reason: "X-Sdk-Date header is missing"}
	}
	if window <= 0 {
		window = DefaultAPIGWindow
	}
	t, err := time.Parse(APIGDateFormat, date)
	if err != nil {
		return "", &AuthError{Reason: "X-Sdk-Date is not yyyyMMddTHHmmssZ"}
	}
	if d := now.Sub(t); d > window || -d > window {
		return "", &AuthError{Reason: fmt.Sprintf("X-Sdk-Date is %s away from now (window %s)", d.Truncate(time.Second), window)}
	}
	dateSigned := false
	for _, s := range auth.SignedHeaders {
		if strings.EqualFold(s, APIGDateHeader) {
			dateSigned = true
		}
	}
	if !dateSigned {
		return "", &AuthError{Reason: "x-sdk-date is not among SignedHeaders"}
	}
	got, ok := decodeHexSig(auth.Signature)
	if !ok {
		return "", &AuthError{Reason: "Signature is not 64 hex characters"}
	}
	payloadHash := hexSHA256(body)
	if declared := r.Header.Get(APIGContentSHA256); declared != "" {
		switch {
		case declared == apigUnsigned && len(body) == 0:
			payloadHash = apigUnsigned
		case strings.EqualFold(declared, payloadHash):
			payloadHash = declared
		default:
			return "", &AuthError{Reason: "X-Sdk-Content-Sha256 does not match the body"}
		}
	}
	sk, ok := lookup(auth.Access)
	if !ok || sk == "" {
		return "", &AuthError{Reason: "unknown access key"}
	}
	want := apigSignature(r, payloadHash, auth.SignedHeaders, date, sk)
	if subtle.ConstantTimeCompare(want, got) != 1 {
		return "", &AuthError{Reason: "signature does not match"}
	}
	return auth.Access, nil
}

func hexSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func apigSignature(r *http.Request, payloadHash string, signed []string, date, sk string) []byte {
	cr := APIGCanonicalRequest(r, payloadHash, signed)
	sts := APIGAlgorithm + "\n" + date + "\n" + hexSHA256([]byte(cr))
	return hmacSHA256([]byte(sk), []byte(sts))
}

// APIGCanonicalRequest builds the SDK-HMAC-SHA256 canonical request of r for
// the given signed header names and hex body hash (exported for diagnostics).
func APIGCanonicalRequest(r *http.Request, payloadHash string, signed []string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(apigCanonicalURI(r.URL.Path))
	b.WriteByte('\n')
	b.WriteString(apigCanonicalQuery(r))
	b.WriteByte('\n')
	for _, name := range signed {
		lower := strings.ToLower(name)
		var values []string
		if lower == "host" {
			host := r.Host
			if host == "" {
				host = r.URL.Host
			}
			values = []string{host}
		} else {
			values = append(values, r.Header.Values(name)...)
			sort.Strings(values)
		}
		for _, v := range values {
			b.WriteString(name)
			b.WriteByte(':')
			b.WriteString(strings.TrimSpace(v))
			b.WriteByte('\n')
		}
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

func apigCanonicalURI(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = apigEscape(s)
	}
	p := strings.Join(segs, "/")
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

func apigCanonicalQuery(r *http.Request) string {
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		ek := apigEscape(k)
		for _, v := range vs {
			parts = append(parts, ek+"="+apigEscape(v))
		}
	}
	return strings.Join(parts, "&")
}

// apigEscape percent-encodes everything but A-Z a-z 0-9 _ - ~ . (upper-case hex).
func apigEscape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '~' || c == '.' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}
