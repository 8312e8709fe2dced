package kit

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/soukhq/souk/internal/testkeys"
	"github.com/soukhq/souk/kg"
)

func TestEnsureKeyPair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	// concurrent first starts agree on one key
	var wg sync.WaitGroup
	keys := make([]*rsa.PrivateKey, 2)
	errs := make([]error, 2)
	for i := range keys {
		wg.Add(1)
		go func() { defer wg.Done(); keys[i], errs[i] = EnsureKeyPair(dir) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !keys[0].Equal(keys[1]) {
		t.Fatal("concurrent EnsureKeyPair produced two different keys")
	}
	k := keys[0]
	if k.N.BitLen() < MinKeyBits {
		t.Fatalf("key has %d bits", k.N.BitLen())
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	again, err := EnsureKeyPair(dir)
	if err != nil || !again.Equal(k) {
		t.Fatalf("second start did not load the same key: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("data dir holds %d entries, want only the key", len(ents))
	}
	pub, err := PublicKeyBase64(k)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(pub, "\n -") {
		t.Fatalf("public key is not one Base64 line: %q", pub)
	}
	parsed, err := kg.ParsePublicKey(pub)
	if err != nil || !parsed.Equal(&k.PublicKey) {
		t.Fatalf("public key does not parse back: %v", err)
	}
	// what Seller Center encrypts with the printed key, the merchant decrypts
	ct, err := kg.EncryptClientSecret(parsed, "client-secret", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if s, _, err := kg.DecryptClientSecret(again, ct); err != nil || s != "client-secret" {
		t.Fatalf("round trip: %q %v", s, err)
	}
}

func TestLoadPrivateKeyRefuses(t *testing.T) {
	dir := t.TempDir()
	// readable by others
	k := testkeys.RSA3072(t)
	pemBytes, _ := kg.MarshalPrivateKeyPEM(k)
	loose := filepath.Join(dir, "loose.pem")
	if err := os.WriteFile(loose, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(loose); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key accepted: %v", err)
	}
	// too short
	small, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	smallPEM, _ := kg.MarshalPrivateKeyPEM(small)
	sp := filepath.Join(dir, "small.pem")
	if err := os.WriteFile(sp, smallPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(sp); err == nil || !strings.Contains(err.Error(), "3072") {
		t.Fatalf("2048-bit key accepted: %v", err)
	}
	// not a key: EnsureKeyPair reports it rather than replacing it
	bad := filepath.Join(dir, "bad")
	if err := os.MkdirAll(bad, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, KeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureKeyPair(bad); err == nil {
		t.Fatal("garbage key file accepted")
	}
	if b, _ := os.ReadFile(filepath.Join(bad, KeyFile)); string(b) != "garbage" {
		t.Fatal("EnsureKeyPair replaced an unreadable key file")
	}
}

func TestParseKeys(t *testing.T) {
	if got := ParseKeys(" new-key , old-key,,"); len(got) != 2 || got[0] != "new-key" || got[1] != "old-key" {
		t.Fatalf("ParseKeys = %q", got)
	}
	if got := ParseKeys(""); len(got) != 0 {
		t.Fatalf("ParseKeys(\"\") = %q", got)
	}
}

// The database records the key pair of the first merchant that starts on it;
// another key is refused until adopted.
func TestBindAndAdoptKey(t *testing.T) {
	first := testkeys.RSA3072(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	fpFirst, _ := Fingerprint(first)
	fpOther, _ := Fingerprint(other)
	if fpFirst == fpOther || len(fpFirst) != 64 {
		t.Fatalf("fingerprints %q %q", fpFirst, fpOther)
	}
	forEachBackend(t, func(t *testing.T, f *fixture) {
		now := f.clk.Now()
		if err := BindKey(f.t.Context(), f.db, now, first); err != nil {
			t.Fatalf("first bind: %v", err)
		}
		if err := BindKey(f.t.Context(), f.db, now, first); err != nil {
			t.Fatalf("same key again: %v", err)
		}
		err := BindKey(f.t.Context(), f.db, now, other)
		var mm *KeyMismatchError
		if !errors.As(err, &mm) || mm.Have != fpOther || mm.Recorded != fpFirst {
			t.Fatalf("other key: %v", err)
		}
		for _, want := range []string{fpOther[:16], fpFirst[:16], "--kit-private-key", "souk merchant public-key --adopt"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("mismatch message lacks %q: %v", want, err)
			}
		}
		old, err := AdoptKey(f.t.Context(), f.db, now, other)
		if err != nil || old != fpFirst {
			t.Fatalf("adopt: %q, %v", old, err)
		}
		if err := BindKey(f.t.Context(), f.db, now, other); err != nil {
			t.Fatalf("adopted key: %v", err)
		}
		if err := BindKey(f.t.Context(), f.db, now, first); !errors.As(err, &mm) {
			t.Fatalf("the key replaced: %v", err)
		}
		if old, err := AdoptKey(f.t.Context(), f.db, now, other); err != nil || old != "" {
			t.Fatalf("adopting the recorded key again: %q, %v", old, err)
		}
	})
}

func TestParsePrivateKeyOption(t *testing.T) {
	pemBytes, err := kg.MarshalPrivateKeyPEM(testkeys.RSA3072(t))
	if err != nil {
		t.Fatal(err)
	}
	if k, err := ParsePrivateKey(string(pemBytes)); err != nil || k.N.BitLen() != 3072 {
		t.Fatalf("3072-bit key: %v", err)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 2048)
	smallPEM, _ := kg.MarshalPrivateKeyPEM(small)
	if _, err := ParsePrivateKey(string(smallPEM)); err == nil || !strings.Contains(err.Error(), "at least 3072") {
		t.Errorf("2048-bit key: %v", err)
	}
	if _, err := ParsePrivateKey("not a key"); err == nil || !strings.Contains(err.Error(), "--kit-private-key") {
		t.Errorf("garbage: %v", err)
	}
}
