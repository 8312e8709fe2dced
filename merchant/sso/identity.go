package sso

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// IdentityHeader is the request header carrying the signed identity when
// souk proxies to the vendor application (Service.Protect).
const IdentityHeader = "Souk-Identity"

// IdentityParam is the query parameter carrying the signed identity on the
// redirect to Config.AppURL after a login.
const IdentityParam = "souk_identity"

// identityPrefix versions the token format; it is also part of the MAC input.
const identityPrefix = "v1"

// MinKeyLen is the shortest accepted identity key, in bytes.
const MinKeyLen = 32

// Identity is the signed-in member as handed to the vendor application. It
// is the payload of a Souk-Identity token:
//
//	v1.<base64url(JSON payload)>.<base64url(HMAC-SHA256(key, "v1." + base64url(JSON payload)))>
//
// (unpadded base64url). A verifier must check the MAC in constant time, then
// that now < exp (and iat is not in the future by more than a little skew),
// and, for a redirect assertion, that jti has not been seen before.
type Identity struct {
	Issuer         string `json:"iss"`              // "souk"
	Audience       string `json:"aud"`              // Config.Audience (default: Config.AppURL)
	Subject        string `json:"sub"`              // tenantId + "/" + userName: unique across tenants
	TenantID       string `json:"tenant"`           // tenantSync tenantId
	TenantCode     string `json:"tenantCode"`       // tenantSync tenantCode
	TenantName     string `json:"tenantName"`       // tenantSync name
	AppID          string `json:"appId"`            // applicationSync appId
	UserName       string `json:"userName"`         // authSync userName (login name, unique inside the tenant)
	UserID         string `json:"userId,omitempty"` // userinfo userId / id
	Name           string `json:"name"`             // display name
	Role           string `json:"role"`             // "admin" or "user" (from authSync)
	Department     string `json:"department"`       // authSync orgCode
	DepartmentName string `json:"departmentName,omitempty"`
	Email          string `json:"email,omitempty"`
	Mobile         string `json:"mobile,omitempty"`
	Enabled        bool   `json:"enabled"`
	Test           bool   `json:"test"` // a debugging (testFlag 1) tenant
	Session        string `json:"sid"`  // opaque session reference (not the cookie)
	IssuedAt       int64  `json:"iat"`  // Unix seconds
	ExpiresAt      int64  `json:"exp"`  // Unix seconds
	ID             string `json:"jti"`  // unique token id
}

// Errors of VerifyIdentity.
var (
	ErrIdentityMalformed = errors.New("sso: malformed identity token")
	ErrIdentitySignature = errors.New("sso: identity token signature does not match")
	ErrIdentityExpired   = errors.New("sso: identity token expired")
	ErrIdentityAudience  = errors.New("sso: identity token is for another audience")
)

func identityMAC(key []byte, signed string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// SignIdentity encodes and signs id with key (at least MinKeyLen bytes).
func SignIdentity(key []byte, id Identity) (string, error) {
	if len(key) < MinKeyLen {
		return "", fmt.Errorf("sso: identity key must be at least %d bytes", MinKeyLen)
	}
	payload, err := json.Marshal(id)
	if err != nil {
		return "", fmt.Errorf("sso: encode identity: %w", err)
	}
	signed := identityPrefix + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(identityMAC(key, signed)), nil
}

// maxIdentityLen bounds a token before any decoding.
const maxIdentityLen = 8192

// identitySkew tolerates clocks of the signer and the verifier disagreeing.
const identitySkew = 30 * time.Second

// VerifyIdentityFor is VerifyIdentity that also requires the token's "aud"
// to be audience (the verifier's own Config.Audience, by default its
// Config.AppURL): a token minted for another application sharing the key is
// refused with ErrIdentityAudience. Vendor applications should use it.
func VerifyIdentityFor(keys [][]byte, token, audience string, now time.Time) (*Identity, error) {
	id, err := VerifyIdentity(keys, token, now)
	if err != nil {
		return nil, err
	}
	if audience == "" || subtle.ConstantTimeCompare([]byte(id.Audience), []byte(audience)) != 1 {
		return nil, ErrIdentityAudience
	}
	return id, nil
}

// VerifyIdentity checks a Souk-Identity token against any of keys (several
// for rotation) and its validity at now, and returns its identity. It does
// not check the audience (VerifyIdentityFor does) and does not remember
// jti; a vendor app accepting redirect assertions should.
func VerifyIdentity(keys [][]byte, token string, now time.Time) (*Identity, error) {
	if len(token) > maxIdentityLen {
		return nil, ErrIdentityMalformed
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != identityPrefix {
		return nil, ErrIdentityMalformed
	}
	mac, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(mac) != sha256.Size {
		return nil, ErrIdentityMalformed
	}
	signed := parts[0] + "." + parts[1]
	ok := false
	for _, k := range keys {
		if len(k) >= MinKeyLen && hmac.Equal(identityMAC(k, signed), mac) {
			ok = true
		}
	}
	if !ok {
		return nil, ErrIdentitySignature
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, ErrIdentityMalformed
	}
	var id Identity
	if err := json.Unmarshal(payload, &id); err != nil {
		return nil, ErrIdentityMalformed
	}
	if id.Issuer != "souk" || id.UserName == "" || id.TenantID == "" || id.ExpiresAt == 0 {
		return nil, ErrIdentityMalformed
	}
	if now.Unix() >= id.ExpiresAt || time.Unix(id.IssuedAt, 0).After(now.Add(identitySkew)) {
		return nil, ErrIdentityExpired
	}
	return &id, nil
}

// ParseKeys reads identity keys from a comma-separated list
// (SOUK_IDENTITY_KEY): each is used as its raw bytes and must be at least
// MinKeyLen long. The first signs; all verify.
func ParseKeys(s string) ([][]byte, error) {
	var out [][]byte
	for i, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("sso: identity key %d has %d bytes; at least %d required", i, len(k), MinKeyLen)
		}
		out = append(out, []byte(k))
	}
	if len(out) == 0 {
		return nil, errors.New("sso: no identity key given")
	}
	return out, nil
}
