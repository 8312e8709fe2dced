package kg

import (
	"crypto/subtle"
	"encoding/hex"
	"strings"
	"time"
)

// Kit x-sign variants reported by VerifyKitSign (README policy 2).
const (
	KitVariantRaw        = "raw"         // over the body bytes as received
	KitVariantSorted     = "sorted"      // top-level keys sorted, nulls dropped, Jackson-style (Huawei's sample)
	KitVariantSortedDeep = "sorted-deep" // every object's keys sorted
)

// KitSign computes the kit x-sign header (joint-kit.md §6.1):
// hex(HMAC-SHA256(kitKey, kitKey + nonce + timestamp + body)), upper-case.
// body is signed as given; souk emits kit bodies with sorted top-level keys
// (see KitBody) so the raw and sorted readings coincide.
func KitSign(kitKey, nonce, timestamp string, body []byte) string {
	return strings.ToUpper(hex.EncodeToString(kitMAC(kitKey, nonce, timestamp, body)))
}

func kitMAC(kitKey, nonce, timestamp string, body []byte) []byte {
	msg := make([]byte, 0, len(kitKey)+len(nonce)+len(timestamp)+len(body))
	msg = append(msg, kitKey...)
	msg = append(msg, nonce...)
	msg = append(msg, timestamp...)
	msg = append(msg, body...)
	return hmacSHA256([]byte(kitKey), msg)
}

// KitBody re-serializes a kit request body the way Huawei's sample signs it:
// top-level keys sorted, null members dropped, compact. A body emitted in this
// form verifies under both the raw and the sorted reading.
func KitBody(body []byte) ([]byte, error) {
	return kitSortedBody(body, false)
}

// KitVerification describes which key and which reading matched.
type KitVerification struct {
	KeyIndex  int    // index in the keys slice
	Variant   string // KitVariantRaw, KitVariantSorted or KitVariantSortedDeep
	Timestamp string // VariantMillis or VariantSeconds
}

// VerifyKitSign checks a kit request's x-sign: x-timestamp within ±window
// (13-digit ms, or 10-digit s), then the signature against each key, first
// over the raw body, then over the body re-serialized with sorted top-level
// keys, then with all keys sorted. It returns the variant that matched.
// Failures are *AuthError.
func VerifyKitSign(keys []string, sign, nonce, timestamp string, body []byte, now time.Time, window time.Duration) (variant string, err error) {
	v, err := VerifyKitSignDetail(keys, sign, nonce, timestamp, body, now, window)
	if err != nil {
		return "", err
	}
	return v.Variant, nil
}

// VerifyKitSignDetail is VerifyKitSign reporting the key index and timestamp unit too.
func VerifyKitSignDetail(keys []string, sign, nonce, timestamp string, body []byte, now time.Time, window time.Duration) (KitVerification, error) {
	if sign == "" {
		return KitVerification{}, &AuthError{Reason: "x-sign is missing"}
	}
	if nonce == "" {
		return KitVerification{}, &AuthError{Reason: "x-nonce is missing"}
	}
	if timestamp == "" {
		return KitVerification{}, &AuthError{Reason: "x-timestamp is missing"}
	}
	tsVariant, err := checkWindow(timestamp, now, window)
	if err != nil {
		return KitVerification{}, err
	}
	got, ok := decodeHexSig(sign)
	if !ok {
		return KitVerification{}, &AuthError{Reason: "x-sign is not 64 hex characters"}
	}
	if len(keys) == 0 {
		return KitVerification{}, &AuthError{Reason: "no kit key configured"}
	}
	candidates := []struct {
		variant string
		body    []byte
	}{{KitVariantRaw, body}}
	if b, err := kitSortedBody(body, false); err == nil {
		candidates = append(candidates, struct {
			variant string
			body    []byte
		}{KitVariantSorted, b})
		if d, err := kitSortedBody(body, true); err == nil && string(d) != string(b) {
			candidates = append(candidates, struct {
				variant string
				body    []byte
			}{KitVariantSortedDeep, d})
		}
	}
	for _, c := range candidates {
		match := -1
		for i, k := range keys {
			if k == "" {
				continue
			}
			if subtle.ConstantTimeCompare(kitMAC(k, nonce, timestamp, c.body), got) == 1 && match < 0 {
				match = i
			}
		}
		if match >= 0 {
			return KitVerification{KeyIndex: match, Variant: c.variant, Timestamp: tsVariant}, nil
		}
	}
	return KitVerification{}, &AuthError{Reason: "x-sign does not match"}
}
