package kg

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func isAuthErr(err error) bool {
	var ae *AuthError
	return errors.As(err, &ae)
}

func TestVerifyV2(t *testing.T) {
	body := []byte(`{"activity":"queryInstance","instanceId":"i-1"}`)
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	ms := strconv.FormatInt(now.UnixMilli(), 10)
	s := strconv.FormatInt(now.Unix(), 10)
	sigMS := SignV2("k1", "nonce", ms, body)
	sigS := SignV2("k1", "nonce", s, body)
	if sigMS != strings.ToUpper(sigMS) {
		t.Fatal("SignV2 must be upper-case hex")
	}
	tests := []struct {
		name      string
		keys      []string
		sig, ts   string
		nonce     string
		body      []byte
		now       time.Time
		wantIdx   int
		wantVar   string
		wantError bool
	}{
		{"ms upper", []string{"k1"}, sigMS, ms, "nonce", body, now, 0, VariantMillis, false},
		{"ms lower", []string{"k1"}, strings.ToLower(sigMS), ms, "nonce", body, now, 0, VariantMillis, false},
		{"seconds", []string{"k1"}, sigS, s, "nonce", body, now, 0, VariantSeconds, false},
		{"second key (rotation)", []string{"old", "k1"}, sigMS, ms, "nonce", body, now, 1, VariantMillis, false},
		{"window edge past", []string{"k1"}, sigMS, ms, "nonce", body, now.Add(60 * time.Second), 0, VariantMillis, false},
		{"window edge future", []string{"k1"}, sigMS, ms, "nonce", body, now.Add(-60 * time.Second), 0, VariantMillis, false},
		{"wrong key", []string{"k2"}, sigMS, ms, "nonce", body, now, 0, "", true},
		{"no keys", nil, sigMS, ms, "nonce", body, now, 0, "", true},
		{"empty key only", []string{""}, SignV2("", "nonce", ms, body), ms, "nonce", body, now, 0, "", true},
		{"stale", []string{"k1"}, sigMS, ms, "nonce", body, now.Add(61 * time.Second), 0, "", true},
		{"future", []string{"k1"}, sigMS, ms, "nonce", body, now.Add(-61 * time.Second), 0, "", true},
		{"tampered body", []string{"k1"}, sigMS, ms, "nonce", append(append([]byte{}, body...), ' '), now, 0, "", true},
		{"other nonce", []string{"k1"}, sigMS, ms, "nonce2", body, now, 0, "", true},
		{"ms sig with s timestamp", []string{"k1"}, sigMS, s, "nonce", body, now, 0, "", true},
		{"11 digits", []string{"k1"}, sigMS, ms[:11], "nonce", body, now, 0, "", true},
		{"signed timestamp", []string{"k1"}, sigMS, "-" + ms[1:], "nonce", body, now, 0, "", true},
		{"not hex", []string{"k1"}, strings.Repeat("zz", 32), ms, "nonce", body, now, 0, "", true},
		{"short sig", []string{"k1"}, sigMS[:62], ms, "nonce", body, now, 0, "", true},
		{"missing sig", []string{"k1"}, "", ms, "nonce", body, now, 0, "", true},
		{"missing nonce", []string{"k1"}, sigMS, ms, "", body, now, 0, "", true},
		{"missing ts", []string{"k1"}, sigMS, "", "nonce", body, now, 0, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx, v, err := VerifyV2(tc.keys, tc.sig, tc.nonce, tc.ts, tc.body, tc.now, DefaultWindow)
			if tc.wantError {
				if err == nil || !isAuthErr(err) {
					t.Fatalf("err = %v, want *AuthError", err)
				}
				if code, _ := CodeOf(err); code != CodeAuthFailed {
					t.Fatalf("code %s", code)
				}
				if strings.Contains(err.Error(), "k1") {
					t.Fatal("error mentions the key")
				}
				return
			}
			if err != nil || idx != tc.wantIdx || v != tc.wantVar {
				t.Fatalf("= %d %q %v; want %d %q", idx, v, err, tc.wantIdx, tc.wantVar)
			}
		})
	}
}

func TestSignedURL(t *testing.T) {
	body := []byte(`{"activity":"newInstance"}`)
	now := time.UnixMilli(1680508066618)
	for _, base := range []string{"https://isv.example.com/saasproduce", "https://isv.example.com/p?tenant=a&x=1"} {
		u, err := SignedURL(base, "k", body, now, "N/1+2")
		if err != nil {
			t.Fatal(err)
		}
		pu, _ := url.Parse(u)
		q := pu.Query()
		if q.Get("timestamp") != "1680508066618" || q.Get("nonce") != "N/1+2" {
			t.Fatalf("%s", u)
		}
		if !strings.HasPrefix(u, base) {
			t.Fatalf("base not kept verbatim: %s", u)
		}
		if _, _, err := VerifyV2([]string{"k"}, q.Get("signature"), q.Get("nonce"), q.Get("timestamp"), body, now, DefaultWindow); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"ftp://x/y", "/relative", "https://", "http://[::1"} {
		if _, err := SignedURL(bad, "k", body, now, "n"); err == nil {
			t.Fatalf("SignedURL(%q) accepted", bad)
		}
	}
}

func TestBodySignHeaderParsing(t *testing.T) {
	body := []byte(`{"resultCode":"000000","resultMsg":"success","instanceId":"b-0001"}`)
	const sig = "nuyLSQkO1L1v2ReITnI/46z0bFG+dhP8OkIXpAyqOiw="
	good := []string{
		`sign_type="HMAC-SHA256", signature= "` + sig + `"`,
		`sign_type="HMAC-SHA256",signature="` + sig + `"`,
		`signature = "` + sig + `" , sign_type = "hmac-sha256"`,
		`sign_type=HMAC-SHA256, signature=` + sig,
	}
	for _, h := range good {
		if err := VerifyBodySignHeader(vecKey, h, body); err != nil {
			t.Fatalf("%s: %v", h, err)
		}
	}
	bad := []struct{ key, header string }{
		{"other", good[0]},
		{vecKey, `sign_type="HMAC-SHA1", signature= "` + sig + `"`},
		{vecKey, `sign_type="HMAC-SHA256"`},
		{vecKey, `signature= "` + sig + `"`},
		{vecKey, `sign_type="HMAC-SHA256", signature= "` + sig[:10] + `"`},
		{vecKey, `sign_type="HMAC-SHA256", signature= "` + sig},
		{vecKey, `garbage`},
		{vecKey, ``},
	}
	for _, tc := range bad {
		if err := VerifyBodySignHeader(tc.key, tc.header, body); err == nil || !isAuthErr(err) {
			t.Fatalf("%q accepted or wrong error: %v", tc.header, err)
		}
	}
	if err := VerifyBodySignHeader(vecKey, good[0], append(body, '\n')); err == nil {
		t.Fatal("trailing newline must change the signature")
	}
}

func TestVerifyKitSign(t *testing.T) {
	now := time.UnixMilli(1680508066618)
	ts := "1680508066618"
	unsorted := []byte(`{"b":2,"a":{"z":1,"y":[3,{"d":1,"c":2}]},"n":null,"f":1.50,"s":"中/<x>"}`)
	sortedTop, _ := KitBody(unsorted)
	if string(sortedTop) != `{"a":{"z":1,"y":[3,{"d":1,"c":2}]},"b":2,"f":1.5,"s":"中/<x>"}` {
		t.Fatalf("KitBody = %s", sortedTop)
	}
	deep, _ := kitSortedBody(unsorted, true)
	tests := []struct {
		name    string
		keys    []string
		signed  []byte
		body    []byte
		sig     func(string) string
		now     time.Time
		variant string
	}{
		{"raw", []string{"kk"}, unsorted, unsorted, strings.ToLower, now, KitVariantRaw},
		{"sorted top-level", []string{"x", "kk"}, sortedTop, unsorted, strings.ToUpper, now, KitVariantSorted},
		{"sorted deep", []string{"kk"}, deep, unsorted, strings.ToUpper, now, KitVariantSortedDeep},
		{"wrong key", []string{"other"}, unsorted, unsorted, strings.ToUpper, now, ""},
		{"tampered", []string{"kk"}, unsorted, bytes.Replace(unsorted, []byte(`"b":2`), []byte(`"b":3`), 1), strings.ToUpper, now, ""},
		{"stale", []string{"kk"}, unsorted, unsorted, strings.ToUpper, now.Add(2 * time.Minute), ""},
		{"future", []string{"kk"}, unsorted, unsorted, strings.ToUpper, now.Add(-2 * time.Minute), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sig := tc.sig(KitSign("kk", "n1", ts, tc.signed))
			v, err := VerifyKitSign(tc.keys, sig, "n1", ts, tc.body, tc.now, DefaultWindow)
			if tc.variant == "" {
				if err == nil || !isAuthErr(err) {
					t.Fatalf("accepted: %q %v", v, err)
				}
				return
			}
			if err != nil || v != tc.variant {
				t.Fatalf("= %q %v, want %q", v, err, tc.variant)
			}
		})
	}
	d, err := VerifyKitSignDetail([]string{"a", "kk"}, KitSign("kk", "n", "1680508066", []byte(`{}`)), "n", "1680508066", []byte(`{}`), now, DefaultWindow)
	if err != nil || d.KeyIndex != 1 || d.Timestamp != VariantSeconds {
		t.Fatalf("%+v %v", d, err)
	}
}

func TestJavaNumbers(t *testing.T) {
	for in, want := range map[string]string{
		"1": "1", "-0": "0", "1.0": "1.0", "1.50": "1.5", "1e2": "100.0", "1E7": "1.0E7", "12345678.9": "1.23456789E7",
		"0.001": "0.001", "0.0001": "1.0E-4", "-2.5e-5": "-2.5E-5", "0.0": "0.0", "-0.0": "-0.0", "123456789012345678901234567890": "123456789012345678901234567890",
	} {
		if got := javaNumber(in); got != want {
			t.Errorf("javaNumber(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestCanonicalAndASCII(t *testing.T) {
	got, err := CanonicalJSON([]byte(` {"b":[{"y":1,"x":"<&>"}],"a":"é\u00e9","\ud83d\ude00":1,"\uffff":2} `))
	if err != nil {
		t.Fatal(err)
	}
	// Java order: U+D83D (surrogate) sorts before U+FFFF.
	if want := `{"a":"éé","b":[{"x":"<&>","y":1}],"😀":1,"` + "\uffff" + `":2}`; string(got) != want {
		t.Fatalf("got %s want %s", got, want)
	}
	if _, err := CanonicalJSON([]byte(`{"a":1} {"b":2}`)); err == nil {
		t.Fatal("trailing data accepted")
	}
	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	if _, err := CanonicalJSON([]byte(deep)); err == nil {
		t.Fatal("deep nesting accepted")
	}
	b, _ := MarshalASCII(map[string]string{"memo": "说明\u2028<a>", "k": "\x01"})
	if string(b) != `{"k":"\u0001","memo":"\u8bf4\u660e\u2028<a>"}` {
		t.Fatalf("%s", b)
	}
}

func TestCredentialCodec(t *testing.T) {
	for _, typ := range []string{EncryptAES256, EncryptAES128} {
		for _, pt := range []string{"", "a", "P@ssw0rd!", strings.Repeat("x", 16), "用户名", strings.Repeat("y", CredentialMaxPlaintext)} {
			enc, err := EncryptCredential(vecKey, typ, pt, rand.Reader)
			if err != nil {
				t.Fatalf("%q: %v", pt, err)
			}
			if len(enc) > CredentialMaxLen || checkIV(enc[:16]) != nil {
				t.Fatalf("bad output %q", enc)
			}
			got, err := DecryptCredential(vecKey, typ, enc)
			if err != nil || got != pt {
				t.Fatalf("round trip %q: %q %v", pt, got, err)
			}
			if got, err := DecryptCredential("otherKey", typ, enc); err == nil && got == pt && pt != "" {
				t.Fatal("wrong key decrypted")
			}
		}
		if _, err := EncryptCredential(vecKey, typ, strings.Repeat("y", CredentialMaxPlaintext+1), rand.Reader); !errors.Is(err, ErrCredentialTooLong) {
			t.Fatalf("80-byte plaintext: %v", err)
		}
	}
	if _, err := EncryptCredential(vecKey, "3", "x", rand.Reader); fieldOfNoT(err) != "encryptType" {
		t.Fatalf("encryptType 3: %v", err)
	}
	if _, err := DecryptCredential(vecKey, "", "x"); fieldOfNoT(err) != "encryptType" {
		t.Fatalf("encryptType empty: %v", err)
	}
	if _, err := EncryptCredential(vecKey, EncryptAES256, "x", bytes.NewReader(nil)); err == nil {
		t.Fatal("empty randomness accepted")
	}
	bad := []string{
		"",
		"0123456789abcdef",
		"0123456789abcde!oA1bcTFQxviCjqM3Vpjrpg==",
		"0123456789abcdef!!!bcTFQxviCjqM3Vpjrpg==",
		"0123456789abcdefoA1bcTFQxviCjqM3Vpjr",
		"0123456789abcdef" + base64.StdEncoding.EncodeToString(make([]byte, 15)),
		"0123456789abcdef" + base64.StdEncoding.EncodeToString(make([]byte, 16)),
	}
	for _, v := range bad {
		if _, err := DecryptCredential(vecKey, EncryptAES256, v); !errors.Is(err, ErrCredentialInvalid) {
			t.Fatalf("%q: %v", v, err)
		}
	}
	if _, err := DecryptCredential(vecKey, EncryptAES256, strings.Repeat("A", 129)); !errors.Is(err, ErrCredentialTooLong) {
		t.Fatalf("129 chars: %v", err)
	}
	if _, err := SHA1PRNGKey("k", 192); err == nil {
		t.Fatal("192 bits accepted")
	}
}

// The Java signed-byte carry differs from a plain 160-bit add: check the
// state update against a hand-computed case where a carry crosses bytes.
func TestSHA1PRNGSignedCarry(t *testing.T) {
	state := []byte{0xff, 0x7f, 0x00}
	out := []byte{0x01, 0x01, 0x00}
	updateSHA1PRNGState(state, out)
	// i0: -1 + 1 + 1 = 1 → 0x01, carry 0; i1: 127 + 1 + 0 = 128 → 0x80, carry 0; i2: 0.
	if !bytes.Equal(state, []byte{0x01, 0x80, 0x00}) {
		t.Fatalf("%x", state)
	}
	state = []byte{0x80, 0x80}
	out = []byte{0x80, 0x00}
	updateSHA1PRNGState(state, out)
	// i0: -128 + -128 + 1 = -255 → 0x01, carry -1; i1: -128 + 0 - 1 = -129 → 0x7f.
	if !bytes.Equal(state, []byte{0x01, 0x7f}) {
		t.Fatalf("%x", state)
	}
	state = []byte{0x00}
	out = []byte{0xff}
	updateSHA1PRNGState(state, out) // 0 + -1 + 1 = 0: unchanged → state[0]++
	if state[0] != 1 {
		t.Fatalf("%x", state)
	}
}

var testKeyOnce struct {
	sync.Once
	k *rsa.PrivateKey
}

// testRSAKey loads a fixed 3072-bit test key (testdata/test_rsa_3072.pem,
// used only by tests) so fuzz workers need not generate one.
func testRSAKey(t testing.TB) *rsa.PrivateKey {
	testKeyOnce.Do(func() {
		data, err := os.ReadFile("testdata/test_rsa_3072.pem")
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParsePrivateKeyPEM(data)
		if err != nil {
			t.Fatal(err)
		}
		testKeyOnce.k = k
	})
	return testKeyOnce.k
}

func TestGenerateRSAKey(t *testing.T) {
	k, err := GenerateRSAKey(rand.Reader)
	if err != nil || k.N.BitLen() != RSAKeyBits {
		t.Fatalf("%v", err)
	}
	enc, err := EncryptClientSecret(&k.PublicKey, "x", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := DecryptClientSecret(k, enc); err != nil || got != "x" {
		t.Fatalf("%q %v", got, err)
	}
}

func TestClientSecret(t *testing.T) {
	k := testRSAKey(t)
	if k.N.BitLen() != RSAKeyBits {
		t.Fatalf("%d bits", k.N.BitLen())
	}
	enc, err := EncryptClientSecret(&k.PublicKey, "s3cr3t-ClientSecret", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	got, variant, err := DecryptClientSecret(k, enc)
	if err != nil || got != "s3cr3t-ClientSecret" || variant != OAEPSHA256MGF1SHA1 {
		t.Fatalf("%q %q %v", got, variant, err)
	}
	sha1ct, _ := rsa.EncryptOAEP(sha1.New(), rand.Reader, &k.PublicKey, []byte("a"), nil)
	sha256ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &k.PublicKey, []byte("b"), nil)
	for _, tc := range []struct{ ct, want, variant string }{
		{base64.StdEncoding.EncodeToString(sha1ct), "a", OAEPSHA1},
		{base64.RawURLEncoding.EncodeToString(sha256ct), "b", OAEPSHA256},
		{"\n" + enc[:40] + "\r\n" + enc[40:], "s3cr3t-ClientSecret", OAEPSHA256MGF1SHA1},
	} {
		got, v, err := DecryptClientSecret(k, tc.ct)
		if err != nil || got != tc.want || v != tc.variant {
			t.Fatalf("%q %q %v, want %q %q", got, v, err, tc.want, tc.variant)
		}
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	//lint:ignore SA1019 a PKCS #1 v1.5 ciphertext is made on purpose: it must be refused
	pkcs1, _ := rsa.EncryptPKCS1v15(rand.Reader, &k.PublicKey, []byte("x"))
	for _, bad := range []struct {
		k  *rsa.PrivateKey
		ct string
	}{
		{k, "not base64!"}, {k, ""}, {k, base64.StdEncoding.EncodeToString([]byte("short"))},
		{other, enc}, {k, base64.StdEncoding.EncodeToString(pkcs1)}, {nil, enc},
	} {
		if _, _, err := DecryptClientSecret(bad.k, bad.ct); !errors.Is(err, ErrClientSecret) {
			t.Fatalf("%v", err)
		}
	}
	if _, err := EncryptClientSecret(nil, "x", rand.Reader); err == nil {
		t.Fatal("nil key")
	}
	_ = crypto.SHA256
}

func TestRSAKeyHelpers(t *testing.T) {
	k := testRSAKey(t)
	pemBytes, err := MarshalPrivateKeyPEM(k)
	if err != nil || !bytes.HasPrefix(pemBytes, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Fatalf("%s %v", pemBytes[:40], err)
	}
	back, err := ParsePrivateKeyPEM(pemBytes)
	if err != nil || !back.Equal(k) {
		t.Fatal(err)
	}
	pub, err := PublicKeyBase64(&k.PublicKey)
	if err != nil || strings.ContainsAny(pub, "\n -") {
		t.Fatalf("%q %v", pub, err)
	}
	p2, err := ParsePublicKey(pub)
	if err != nil || !p2.Equal(&k.PublicKey) {
		t.Fatal(err)
	}
	wrapped := "-----BEGIN PUBLIC KEY-----\n" + pub[:64] + "\n" + pub[64:] + "\n-----END PUBLIC KEY-----\n"
	if p3, err := ParsePublicKey(wrapped); err != nil || !p3.Equal(&k.PublicKey) {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "abc", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if _, err := ParsePrivateKeyPEM([]byte(bad)); err == nil {
			t.Fatalf("private %q accepted", bad)
		}
		if _, err := ParsePublicKey(bad); err == nil {
			t.Fatalf("public %q accepted", bad)
		}
	}
}

// A refused timestamp's error names the problem, never the value: it becomes
// a resultMsg, which the protocol caps at 255 characters.
func TestParseTimestampErrorsDoNotQuote(t *testing.T) {
	for _, ts := range []string{strings.Repeat("9", 300), strings.Repeat("1", 19), "12345678901", "", "12x4567890123"} {
		_, _, err := ParseTimestamp(ts)
		if err == nil {
			t.Fatalf("ParseTimestamp(%q): no error", ts)
		}
		if len(err.Error()) > 64 || (len(ts) > 4 && strings.Contains(err.Error(), ts)) {
			t.Errorf("ParseTimestamp(%d chars): error %q quotes the value or runs long", len(ts), err)
		}
	}
}
