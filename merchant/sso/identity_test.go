package sso

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIdentityToken(t *testing.T) {
	now := time.Unix(1_780_000_000, 0)
	id := Identity{Issuer: "souk", TenantID: "t", UserName: "alice", Role: "admin", IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix(), ID: "j1"}
	tok, err := SignIdentity(identityKey, id)
	if err != nil {
		t.Fatal(err)
	}
	other := []byte(strings.Repeat("k", 32))
	got, err := VerifyIdentity([][]byte{other, identityKey}, tok, now.Add(59*time.Second))
	if err != nil || *got != id {
		t.Fatalf("verify: %+v %v", got, err)
	}
	parts := strings.Split(tok, ".")
	mid := len(parts[1]) / 2
	flip := byte('A')
	if parts[1][mid] == 'A' {
		flip = 'B'
	}
	tampered := parts[0] + "." + parts[1][:mid] + string(flip) + parts[1][mid+1:] + "." + parts[2]
	for name, tc := range map[string]struct {
		keys  [][]byte
		token string
		at    time.Time
		want  error
	}{
		"expired":     {[][]byte{identityKey}, tok, now.Add(time.Minute), ErrIdentityExpired},
		"future iat":  {[][]byte{identityKey}, tok, now.Add(-time.Minute), ErrIdentityExpired},
		"wrong key":   {[][]byte{other}, tok, now, ErrIdentitySignature},
		"short key":   {[][]byte{identityKey[:8]}, tok, now, ErrIdentitySignature},
		"tampered":    {[][]byte{identityKey}, tampered, now, ErrIdentitySignature},
		"two parts":   {[][]byte{identityKey}, parts[0] + "." + parts[1], now, ErrIdentityMalformed},
		"version":     {[][]byte{identityKey}, "v2." + parts[1] + "." + parts[2], now, ErrIdentityMalformed},
		"empty":       {[][]byte{identityKey}, "", now, ErrIdentityMalformed},
		"bad mac b64": {[][]byte{identityKey}, parts[0] + "." + parts[1] + ".!!", now, ErrIdentityMalformed},
	} {
		if _, err := VerifyIdentity(tc.keys, tc.token, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// the audience, checked by VerifyIdentityFor
	id.Audience = "https://app.example/"
	forApp, _ := SignIdentity(identityKey, id)
	for name, tc := range map[string]struct {
		token, audience string
		want            error
	}{
		"same audience":   {forApp, "https://app.example/", nil},
		"other audience":  {forApp, "https://other.example/", ErrIdentityAudience},
		"no audience":     {tok, "https://app.example/", ErrIdentityAudience},
		"empty expected":  {tok, "", ErrIdentityAudience},
		"bad token first": {tampered, "https://app.example/", ErrIdentitySignature},
		"audience prefix": {forApp, "https://app.example", ErrIdentityAudience},
	} {
		if _, err := VerifyIdentityFor([][]byte{identityKey}, tc.token, tc.audience, now); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := SignIdentity([]byte("short"), id); err == nil {
		t.Error("short key accepted for signing")
	}
	// a validly signed payload missing required claims is malformed
	empty, _ := SignIdentity(identityKey, Identity{Issuer: "souk", ExpiresAt: now.Add(time.Minute).Unix()})
	if _, err := VerifyIdentity([][]byte{identityKey}, empty, now); !errors.Is(err, ErrIdentityMalformed) {
		t.Errorf("claims missing: %v", err)
	}
}

func FuzzVerifyIdentity(f *testing.F) {
	now := time.Unix(1_780_000_000, 0)
	tok, _ := SignIdentity(identityKey, Identity{Issuer: "souk", TenantID: "t", UserName: "u", IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix()})
	f.Add(tok)
	f.Add("v1..")
	f.Add("v1.e30.AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		id, err := VerifyIdentity([][]byte{identityKey}, token, now)
		if err == nil {
			if id.UserName == "" || id.TenantID == "" || now.Unix() >= id.ExpiresAt {
				t.Fatalf("accepted %+v", id)
			}
			// only a token signed with the key verifies: re-signing reproduces its MAC
			again, _ := SignIdentity(identityKey, *id)
			if _, err := VerifyIdentity([][]byte{identityKey}, again, now); err != nil {
				t.Fatalf("re-signed identity rejected: %v", err)
			}
			return
		}
		if !errors.Is(err, ErrIdentityMalformed) && !errors.Is(err, ErrIdentitySignature) && !errors.Is(err, ErrIdentityExpired) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func TestParseKeys(t *testing.T) {
	long := strings.Repeat("a", 32)
	keys, err := ParseKeys(long + " , " + strings.Repeat("b", 40))
	if err != nil || len(keys) != 2 || string(keys[0]) != long {
		t.Fatalf("ParseKeys = %q %v", keys, err)
	}
	for _, bad := range []string{"", " , ", "short", long + ",short"} {
		if _, err := ParseKeys(bad); err == nil {
			t.Errorf("ParseKeys(%q) accepted", bad)
		}
	}
}
