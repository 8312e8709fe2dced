package idp

import (
	"errors"
	"strings"
	"testing"
)

var cheap = PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash %q does not record its parameters", h)
	}
	h2, _ := HashPassword("correct horse battery", cheap)
	if h == h2 {
		t.Error("two hashes of one password are equal: no salt")
	}
	if err := VerifyPassword(h, "correct horse battery"); err != nil {
		t.Errorf("right password: %v", err)
	}
	for _, wrong := range []string{"", "correct horse batter", "Correct horse battery", strings.Repeat("x", 2000)} {
		if err := VerifyPassword(h, wrong); !errors.Is(err, ErrPasswordMismatch) {
			t.Errorf("wrong password %q: %v", wrong, err)
		}
	}
	if !NeedsRehash(h, DefaultPasswordParams) || NeedsRehash(h, cheap) {
		t.Error("NeedsRehash")
	}
	// Default parameters: RFC 9106 (64 MiB, 3 passes).
	hd, err := HashPassword("pw-default-params", DefaultPasswordParams)
	if err != nil || !strings.HasPrefix(hd, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Errorf("default hash %q, %v", hd, err)
	}
	if _, err := HashPassword("", cheap); err == nil {
		t.Error("empty password hashed")
	}
	if _, err := HashPassword("x", PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 4, KeyLen: 32}); err == nil {
		t.Error("short salt accepted")
	}
}

func TestParsePasswordHashRejects(t *testing.T) {
	good, _ := HashPassword("pw", cheap)
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	cases := map[string]string{
		"empty":            "",
		"bcrypt":           "$2a$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz12345",
		"argon2i":          "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"old version":      "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,
		"missing param":    "$argon2id$v=19$m=64,t=1$" + salt + "$" + key,
		"duplicate param":  "$argon2id$v=19$m=64,m=64,t=1,p=1$" + salt + "$" + key,
		"unknown param":    "$argon2id$v=19$m=64,t=1,p=1,x=2$" + salt + "$" + key,
		"huge memory":      "$argon2id$v=19$m=4294967295,t=1,p=1$" + salt + "$" + key,
		"huge time":        "$argon2id$v=19$m=64,t=100000,p=1$" + salt + "$" + key,
		"zero lanes":       "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key,
		"too many lanes":   "$argon2id$v=19$m=64000,t=1,p=300$" + salt + "$" + key,
		"memory < 8*lanes": "$argon2id$v=19$m=8,t=1,p=2$" + salt + "$" + key,
		"bad salt":         "$argon2id$v=19$m=64,t=1,p=1$!!$" + key,
		"short key":        "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$AAAA",
		"trailing field":   good + "$x",
		"negative":         "$argon2id$v=19$m=-64,t=1,p=1$" + salt + "$" + key,
	}
	for name, h := range cases {
		if _, err := parsePasswordHash(h); err == nil {
			t.Errorf("%s: %q parsed", name, h)
		}
		if err := VerifyPassword(h, "pw"); err == nil || errors.Is(err, ErrPasswordMismatch) {
			t.Errorf("%s: VerifyPassword = %v, want a hash error", name, err)
		}
	}
}

// FuzzParsePasswordHash: no input panics, parameters stay bounded, and what
// parses round-trips through its own fields.
func FuzzParsePasswordHash(f *testing.F) {
	good, _ := HashPassword("pw", cheap)
	f.Add(good)
	f.Add("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g")
	f.Add("$argon2id$v=19$m=,t=,p=$$")
	f.Add("$$$$$")
	f.Fuzz(func(t *testing.T, h string) {
		ph, err := parsePasswordHash(h)
		if err != nil {
			return
		}
		if ph.params.Memory > maxArgonMemory || ph.params.Time > maxArgonTime || len(ph.key) > maxArgonKeyLen || len(ph.salt) > maxArgonSaltLen {
			t.Fatalf("unbounded parameters accepted: %+v", ph.params)
		}
		if ph.params.Threads == 0 || ph.params.Memory < 8*uint32(ph.params.Threads) || len(ph.key) < 16 || len(ph.salt) < 8 {
			t.Fatalf("degenerate parameters accepted: %+v", ph.params)
		}
	})
}

func TestSafeContinue(t *testing.T) {
	cases := map[string]string{
		"/api/v1/oauth2/authorize?client_id=a&state=b": "/api/v1/oauth2/authorize?client_id=a&state=b",
		"/unified-login/":                              "/unified-login/",
		"/unified-login/portal-login?appId=x":          "/unified-login/portal-login?appId=x",
		"https://evil.example/api/v1/oauth2/authorize": "",
		"//evil.example/api/v1/oauth2/authorize":       "",
		"/\\evil.example/":                             "",
		"/api/v1/logout":                               "",
		"javascript:alert(1)":                          "",
		"":                                             "",
		"/api/v1/oauth2/token":                         "",
	}
	for in, want := range cases {
		if got := safeContinue(in); got != want {
			t.Errorf("safeContinue(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzSafeContinue: whatever comes back is a local path of the IdP.
func FuzzSafeContinue(f *testing.F) {
	for _, s := range []string{"/api/v1/oauth2/authorize?x=1", "//evil", "https://e/x", "/unified-login/", "/%2F%2Fevil", "/unified-login/../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := safeContinue(s)
		if got == "" {
			return
		}
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.Contains(got, "\\") {
			t.Fatalf("safeContinue(%q) = %q: not a local path", s, got)
		}
		if !(strings.HasPrefix(got, PathAuthorize) || strings.HasPrefix(got, PathUnified)) {
			t.Fatalf("safeContinue(%q) = %q: not an IdP page", s, got)
		}
	})
}
