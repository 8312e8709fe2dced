package kg

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/internal/bogus"
)

// kitSortedBodyTree is the tree-based reading kitSortedBody replaced (parseJSON
// + writeJSON): the reference it must agree with, byte for byte.
func kitSortedBodyTree(data []byte, deep bool) ([]byte, error) {
	v, err := parseJSON(data)
	if err != nil {
		return nil, err
	}
	if v.kind != 'o' {
		return nil, errors.New("body is not a JSON object")
	}
	members := make([]jmember, 0, len(v.obj))
	for _, m := range v.obj {
		if m.val.kind != 'z' {
			members = append(members, m)
		}
	}
	v.obj = sortedMembers(members)
	var buf bytes.Buffer
	writeJSON(&buf, v, jsonStyle{sortNested: deep, java: true})
	return buf.Bytes(), nil
}

func checkKitSortedAgrees(t *testing.T, data []byte) {
	t.Helper()
	for _, deep := range []bool{false, true} {
		want, werr := kitSortedBodyTree(data, deep)
		got, gerr := kitSortedBody(data, deep)
		if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("kitSortedBody(%q, deep=%v) = %q, %v; the tree reading gives %q, %v", data, deep, got, gerr, want, werr)
		}
	}
}

var kitCanonCases = []string{
	`{}`, ` { } `, `{"a":1}`, "\t{\"b\" : 2 ,\n \"a\" : [ 1 , 2 ] }\r\n",
	`{"b":2,"a":{"z":1,"y":[3,{"d":1,"c":2}]},"n":null,"f":1.50,"s":"中/<x>"}`,
	`{"a":1,"a":null}`, `{"a":null,"a":1}`, `{"a":{"x":1,"y":2,"x":3}}`, `{"a":[{"b":1,"c":2,"b":null,"a":0}]}`,
	`{"k":"\u00e9\ud83d\ude00\n\"\\\/\u0000\u2028"}`, `{"\u0062":1,"b":2,"a\"":3}`, `{"k":"\ud800 lone","\udfff":1}`,
	"{\"k\":\"\xff\xfe bad utf-8\",\"\xc3\":1}", `{"e":[1e400,-0,-0.0,0.0010,1E7,12345678.9,5.0,-1.5e-3]}`,
	`{"t":[true,false,null],"o":{},"a":[],"n":{"m":{"l":[[],[{}]]}}}`,
	`{"𝄞":1,"ｚ":2,"é":3,"e":4}`, `{"a":"\\"}`, `{"a":"\\\\\"x"}`,
	`[1,2]`, `"x"`, `1`, `null`, ``, `{`, `{"a":1}x`, `{"a":1} {}`, `{"a":01}`, `{'a':1}`, `{"a":[1,]}`,
	`{"a":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`,
	`{"a":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`,
	`{"a":` + strings.Repeat("[", 64) + "1" + strings.Repeat("]", 64) + `}`,
	`{"a":` + strings.Repeat("[", 63) + "1" + strings.Repeat("]", 63) + `}`,
	`{"a":` + strings.Repeat(`{"b":`, 63) + "1" + strings.Repeat("}", 63) + `}`,
	`{"a":` + strings.Repeat(`{"b":`, 64) + "1" + strings.Repeat("}", 64) + `}`,
	`{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `,"a":1}`,
}

func TestKitSortedBodyMatchesTree(t *testing.T) {
	for _, c := range kitCanonCases {
		checkKitSortedAgrees(t, []byte(c))
	}
}

// FuzzKitSortedBody: the streaming re-serialization agrees with the tree one.
func FuzzKitSortedBody(f *testing.F) {
	for _, c := range kitCanonCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkKitSortedAgrees(t, data)
	})
}

// An unauthenticated caller chooses the body: a large one of tiny values must
// cost an HMAC per key, never a parse; one within the fallback bound is
// re-serialized once, in memory proportional to its size.
func TestVerifyKitSignBoundsFallback(t *testing.T) {
	now := time.UnixMilli(1680508066618)
	ts := "1680508066618"
	bogusSig := strings.Repeat("ab", 32)
	keys := []string{"kk", "old"}
	var parses int
	kitFallbackHook = func([]byte) { parses++ }
	defer func() { kitFallbackHook = nil }()

	big := bogus.Body(4 << 20)
	var err error
	n := bogus.Allocated(func() { _, err = VerifyKitSign(keys, bogusSig, "n1", ts, big, now, DefaultWindow) })
	if !isAuthErr(err) || parses != 0 {
		t.Fatalf("4 MiB bogus body: %v, %d parses; want an auth error and none", err, parses)
	}
	t.Logf("4 MiB bogus body: %d bytes allocated", n)
	if n > 64<<10 {
		t.Errorf("4 MiB bogus body allocated %d bytes; want < 64 KiB (the tree parse took ~3 GB)", n)
	}

	fits := bogus.Body(KitFallbackMaxBody - 1)
	n = bogus.Allocated(func() { _, err = VerifyKitSign(keys, bogusSig, "n1", ts, fits, now, DefaultWindow) })
	if !isAuthErr(err) || parses != 1 {
		t.Fatalf("bogus body within the bound: %v, %d parses; want an auth error after one", err, parses)
	}
	t.Logf("bogus body of %d bytes: %d bytes allocated by the fallback", len(fits), n)
	if n > 4*uint64(len(fits)) {
		t.Errorf("bogus body of %d bytes allocated %d bytes in the fallback; want < 4× its size", len(fits), n)
	}

	// Legitimate readings of a large body: raw at any size without a parse,
	// sorted within the bound, raw-only beyond it.
	parses = 0
	if v, err := VerifyKitSign(keys, KitSign("old", "n1", ts, big), "n1", ts, big, now, DefaultWindow); err != nil || v != KitVariantRaw || parses != 0 {
		t.Fatalf("raw-signed 4 MiB body: %q %v, %d parses", v, err, parses)
	}
	spaced := append([]byte(" "), fits...) // KitFallbackMaxBody bytes; its sorted reading drops the space
	if len(spaced) != KitFallbackMaxBody {
		t.Fatalf("body of %d bytes", len(spaced))
	}
	sorted, _ := KitBody(spaced)
	if v, err := VerifyKitSign(keys, KitSign("kk", "n1", ts, sorted), "n1", ts, spaced, now, DefaultWindow); err != nil || v != KitVariantSorted || parses != 1 {
		t.Fatalf("sorted-signed body at the bound: %q %v, %d parses", v, err, parses)
	}
	over := append([]byte(" "), spaced...)
	if _, err := VerifyKitSign(keys, KitSign("kk", "n1", ts, sorted), "n1", ts, over, now, DefaultWindow); !isAuthErr(err) || parses != 1 {
		t.Fatalf("sorted-signed body over the bound: %v, %d parses; want an auth error and no parse", err, parses)
	}
}

func TestVerifyKitSignWithOptions(t *testing.T) {
	now := time.UnixMilli(1680508066618)
	ts := "1680508066618"
	body := []byte(`{"b":1,"a":2}`)
	sorted, _ := KitBody(body)
	busy := &ResultError{Code: CodeInProgress, Msg: "busy"}
	acquired, released := 0, 0
	o := KitVerifyOptions{Acquire: func() (func(), error) {
		acquired++
		if acquired > 1 {
			return nil, busy
		}
		return func() { released++ }, nil
	}}
	if v, err := VerifyKitSignWith(o, []string{"k"}, KitSign("k", "n", ts, body), "n", ts, body, now, DefaultWindow); err != nil || v.Variant != KitVariantRaw || acquired != 0 {
		t.Fatalf("raw: %+v %v, acquired %d; the raw reading needs no slot", v, err, acquired)
	}
	if v, err := VerifyKitSignWith(o, []string{"k"}, KitSign("k", "n", ts, sorted), "n", ts, body, now, DefaultWindow); err != nil || v.Variant != KitVariantSorted || acquired != 1 || released != 1 {
		t.Fatalf("sorted: %+v %v, acquired %d released %d", v, err, acquired, released)
	}
	if _, err := VerifyKitSignWith(o, []string{"k"}, KitSign("k", "n", ts, sorted), "n", ts, body, now, DefaultWindow); err != busy {
		t.Fatalf("no slot: %v, want the Acquire error as is", err)
	}
	o.MaxFallbackBody = -1
	if _, err := VerifyKitSignWith(o, []string{"k"}, KitSign("k", "n", ts, sorted), "n", ts, body, now, DefaultWindow); !isAuthErr(err) || acquired != 2 {
		t.Fatalf("fallback off: %v, acquired %d", err, acquired)
	}
	o.MaxFallbackBody = len(body) - 1
	if _, err := VerifyKitSignWith(o, []string{"k"}, KitSign("k", "n", ts, sorted), "n", ts, body, now, DefaultWindow); !isAuthErr(err) || acquired != 2 {
		t.Fatalf("body over the bound: %v, acquired %d", err, acquired)
	}
}
