package kg

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
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

// kitMAC is HMAC-SHA256(kitKey, kitKey + nonce + timestamp + body), written
// piecewise: the body is not copied.
func kitMAC(kitKey, nonce, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(kitKey))
	m.Write([]byte(kitKey))
	m.Write([]byte(nonce))
	m.Write([]byte(timestamp))
	m.Write(body)
	return m.Sum(nil)
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

// KitFallbackMaxBody is the largest body VerifyKitSign re-serializes for the
// sorted readings; a larger body verifies over its raw bytes only. The
// largest documented kit body, an authSync of 500 users (joint-kit.md §4)
// with every field at its documented maximum length in 3-byte UTF-8
// characters, is 0.96 MB; 1 MiB also holds an allOrgSync of about 15,000
// departments of typical size (70 bytes each).
const KitFallbackMaxBody = 1 << 20

// KitVerifyOptions bound the work VerifyKitSignWith does for a body whose raw
// bytes match no key: the re-serialization of the sorted readings (README
// policy 2's fallback), which, unlike an HMAC, costs memory and time that an
// unauthenticated caller chooses.
type KitVerifyOptions struct {
	// MaxFallbackBody is the largest body re-serialized; 0 means
	// KitFallbackMaxBody, a negative value turns the fallback off.
	MaxFallbackBody int
	// Acquire, when set, is called before a re-serialization and must return
	// a release function, or an error that VerifyKitSignWith returns as is:
	// a caller bounds with it how many run at once (merchant/kit answers
	// 000004 when none is free within a second).
	Acquire func() (release func(), err error)
}

// VerifyKitSign checks a kit request's x-sign: x-timestamp within ±window
// (13-digit ms, or 10-digit s), then the signature against each key, first
// over the raw body, then — for a body of at most KitFallbackMaxBody bytes —
// over the body re-serialized with sorted top-level keys, then with all keys
// sorted. It returns the variant that matched. Failures are *AuthError.
func VerifyKitSign(keys []string, sign, nonce, timestamp string, body []byte, now time.Time, window time.Duration) (variant string, err error) {
	v, err := VerifyKitSignDetail(keys, sign, nonce, timestamp, body, now, window)
	if err != nil {
		return "", err
	}
	return v.Variant, nil
}

// VerifyKitSignDetail is VerifyKitSign reporting the key index and timestamp unit too.
func VerifyKitSignDetail(keys []string, sign, nonce, timestamp string, body []byte, now time.Time, window time.Duration) (KitVerification, error) {
	return VerifyKitSignWith(KitVerifyOptions{}, keys, sign, nonce, timestamp, body, now, window)
}

// kitFallbackHook, when set (tests), sees each fallback re-serialization.
var kitFallbackHook func(body []byte)

// VerifyKitSignWith is VerifyKitSignDetail with the fallback bounded by o.
// The raw body is checked first, with every key (an HMAC each, compared in
// constant time); only when none matches, and the body is within the bound,
// is it validated (once) and re-serialized for the sorted reading and, if that
// does not match either, for the all-levels-sorted one. No tree is built
// (kitSortedBody): the fallback costs a small multiple of the body's size.
func VerifyKitSignWith(o KitVerifyOptions, keys []string, sign, nonce, timestamp string, body []byte, now time.Time, window time.Duration) (KitVerification, error) {
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
	mismatch := &AuthError{Reason: "x-sign does not match"}
	if i := matchKitKey(keys, got, nonce, timestamp, body); i >= 0 {
		return KitVerification{KeyIndex: i, Variant: KitVariantRaw, Timestamp: tsVariant}, nil
	}
	limit := o.MaxFallbackBody
	if limit == 0 {
		limit = KitFallbackMaxBody
	}
	if limit < 0 || len(body) > limit {
		return KitVerification{}, mismatch
	}
	if o.Acquire != nil {
		release, err := o.Acquire()
		if err != nil {
			return KitVerification{}, err
		}
		defer release()
	}
	if kitFallbackHook != nil {
		kitFallbackHook(body)
	}
	if err := checkKitObject(body); err != nil { // only the raw reading exists
		return KitVerification{}, mismatch
	}
	sorted := writeKitSorted(body, false)
	if i := matchKitKey(keys, got, nonce, timestamp, sorted); i >= 0 {
		return KitVerification{KeyIndex: i, Variant: KitVariantSorted, Timestamp: tsVariant}, nil
	}
	if deep := writeKitSorted(body, true); !bytes.Equal(deep, sorted) {
		if i := matchKitKey(keys, got, nonce, timestamp, deep); i >= 0 {
			return KitVerification{KeyIndex: i, Variant: KitVariantSortedDeep, Timestamp: tsVariant}, nil
		}
	}
	return KitVerification{}, mismatch
}

// matchKitKey returns the index of the first key whose x-sign over body is
// got, or -1 (matchKey).
func matchKitKey(keys []string, got []byte, nonce, timestamp string, body []byte) int {
	return matchKey(keys, got, func(k string) []byte { return kitMAC(k, nonce, timestamp, body) })
}
