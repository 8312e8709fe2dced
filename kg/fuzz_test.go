package kg

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Every parser and verifier has a fuzz target; the seed corpora live in
// testdata/fuzz/<FuzzName>/. Run one with e.g.
//
//	go test ./kg -run '^$' -fuzz '^FuzzDecodeRequest$' -fuzztime 10s

func mustFieldError(t *testing.T, err error) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FieldError", err, err)
	}
	if fe.Field == "" {
		t.Fatal("FieldError without a field")
	}
}

func mustAuthError(t *testing.T, err error) {
	t.Helper()
	if !isAuthErr(err) {
		t.Fatalf("error %v (%T) is not a *AuthError", err, err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"activity":"newInstance","businessId":"b-0001","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}`))
	f.Add([]byte(`{"activity":"queryInstance","instanceId":"a,b,c"}`))
	f.Add([]byte(`{"activity":"releaseInstance","instanceId":"a\u0000b"}`)) // NUL: 000002
	f.Add([]byte(`{"activity":"refreshInstance","scene":"RENEWAL","orderId":"o","orderLineId":"l","instanceId":"i","expireTime":"20221124023618256"}`))
	f.Add([]byte(`{"activity":"changeInstanceCheck","instanceId":"i","productInfo":"{\"productId\":\"p\"}"}`))
	f.Add([]byte(`{"activity":"updateInstanceStatus","instanceId":"i","status":"FREEZE","testFlag":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeRequest(body)
		vreq, variants, verr := DecodeRequestVariants(body)
		if (err == nil) != (verr == nil) || (err == nil && !reflect.DeepEqual(req, vreq)) {
			t.Fatalf("DecodeRequestVariants disagrees with DecodeRequest: %v / %v", err, verr)
		}
		for _, v := range variants {
			if v == "" || len(v) > 64 {
				t.Fatalf("variant %q", v)
			}
		}
		if err != nil {
			mustFieldError(t, err)
			return
		}
		enc, err := EncodeRequest(req)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := DecodeRequest(enc)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		enc2, _ := EncodeRequest(again)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("unstable:\n%s\n%s", enc, enc2)
		}
	})
}

func FuzzDecodeKitRequest(f *testing.F) {
	f.Add("/produceAPI/v2/tenantSync", []byte(`{"tenantId":"t","tenantCode":"c","name":"n","domainName":"https://d","flag":1,"testFlag":0,"timeStamp":"20220413093539534"}`))
	f.Add("authSync", []byte(`{"tenantId":"t","appId":"a","flag":1,"timeStamp":"20220413093539534","userList":"[{\"userName\":\"u\",\"name\":\"n\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\"}]"}`))
	f.Add("allOrgSync", []byte(`{"tenantId":"t","timeStamp":"20220413093539534","orgInfoList":"[{orgCode:\"1\",orgName:\"a\"}]"}`))
	f.Add("singleOrgSync", []byte(`{"tenantId":"t","orgCode":"1","orgName":"a","flag":"2","timeStamp":"20220413093539534"}`))
	f.Add("applicationSync", []byte(`{"tenantId":"t","appId":"a","clientId":"c","clientSecret":"x","flag":1,"timeStamp":"20220413093539534"}`))
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		req, err := DecodeKitRequest(path, body)
		if err != nil {
			mustFieldError(t, err)
			return
		}
		enc, err := EncodeKitRequest(req)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeKitRequest(req.KitName(), enc); err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
	})
}

func FuzzVerifyV2(f *testing.F) {
	f.Add("TestAccessKey123", "092E116C0F2D1B696DA9E05781613862D0F72C3EF5CC6469D2BD36D69E09A099", "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA", "1680508066618",
		[]byte(`{"activity":"newInstance","businessId":"b-0001","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}`), int64(1680508066618))
	f.Add("k", "zz", "n", "1680508066", []byte(`{}`), int64(1680508066000))
	f.Fuzz(func(t *testing.T, key, sig, nonce, ts string, body []byte, nowMS int64) {
		now := time.UnixMilli(nowMS)
		idx, _, err := VerifyV2([]string{key}, sig, nonce, ts, body, now, DefaultWindow)
		if err != nil {
			mustAuthError(t, err)
		} else if idx != 0 || !strings.EqualFold(sig, SignV2(key, nonce, ts, body)) {
			t.Fatalf("accepted a signature SignV2 does not produce")
		}
		// Sign-then-verify always holds for a fresh timestamp.
		if key == "" || nonce == "" {
			return
		}
		fresh := strconv.FormatInt(now.UnixMilli(), 10)
		if len(fresh) != 13 {
			return
		}
		if _, v, err := VerifyV2([]string{"x", key}, strings.ToLower(SignV2(key, nonce, fresh, body)), nonce, fresh, body, now, DefaultWindow); err != nil || v != VariantMillis {
			t.Fatalf("round trip: %q %v", v, err)
		}
	})
}

func FuzzVerifyKitSign(f *testing.F) {
	f.Add("TestAccessKey123", "4c1507184a6f4011fabeab61496813b0b4d9f9cbc6a0c40509f631d4bffd239a", "n1", "1680508066618", []byte(`{"a":1}`), int64(1680508066618))
	f.Add("k", "", "n", "x", []byte(`{"b":null,"a":[1.0e3,"\u00e9"]}`), int64(0))
	f.Fuzz(func(t *testing.T, key, sig, nonce, ts string, body []byte, nowMS int64) {
		now := time.UnixMilli(nowMS)
		if _, err := VerifyKitSign([]string{key}, sig, nonce, ts, body, now, DefaultWindow); err != nil {
			mustAuthError(t, err)
		}
		if key == "" || nonce == "" {
			return
		}
		fresh := strconv.FormatInt(now.UnixMilli(), 10)
		if len(fresh) != 13 {
			return
		}
		if v, err := VerifyKitSign([]string{key}, KitSign(key, nonce, fresh, body), nonce, fresh, body, now, DefaultWindow); err != nil || v != KitVariantRaw {
			t.Fatalf("raw round trip: %q %v", v, err)
		}
		if sorted, err := KitBody(body); err == nil && len(body) <= KitFallbackMaxBody {
			if _, err := VerifyKitSign([]string{key}, KitSign(key, nonce, fresh, sorted), nonce, fresh, body, now, DefaultWindow); err != nil {
				t.Fatalf("sorted round trip of %q: %v", body, err)
			}
		}
	})
}

func FuzzVerifyAPIG(f *testing.F) {
	f.Add("SDK-HMAC-SHA256 Access=ak, SignedHeaders=host;x-sdk-date, Signature=77595ad624b6e4e49990b8c4e84bf1c287457fca61069c4e60b9b6765b52053d", "20240317T144237Z", "/api/x", "a=1&b=%20", []byte(`{}`))
	f.Add("SDK-HMAC-SHA256 Access=, SignedHeaders=;, Signature=", "2024", "/", "", []byte(nil))
	f.Add("Bearer x", "", "/a b/ü", "q=一", []byte("x"))
	f.Fuzz(func(t *testing.T, auth, date, path, rawQuery string, body []byte) {
		lookup := func(ak string) (string, bool) { return "sk", ak == "ak" }
		now := time.Date(2024, 3, 17, 14, 42, 37, 0, time.UTC)
		r := &http.Request{Method: "POST", URL: &url.URL{Scheme: "https", Host: "mkt.myhuaweicloud.com", Path: path, RawQuery: rawQuery}, Header: http.Header{}, Host: "mkt.myhuaweicloud.com"}
		r.Header.Set("Authorization", auth)
		r.Header.Set("X-Sdk-Date", date)
		if _, err := VerifyAPIG(r, body, lookup, now, DefaultAPIGWindow); err != nil {
			mustAuthError(t, err)
		}
		if _, err := ParseAPIGAuthorization(auth); err != nil {
			mustAuthError(t, err)
		}
		// Whatever the path, query and body, SignAPIG output verifies.
		r2 := &http.Request{Method: "GET", URL: &url.URL{Scheme: "https", Host: "h.example.com", Path: path, RawQuery: rawQuery}, Header: http.Header{}}
		r2.Header.Set("X-Extra", strings.Map(func(c rune) rune {
			if c < 0x20 || c == 0x7f {
				return -1
			}
			return c
		}, date))
		if err := SignAPIG(r2, body, "ak", "sk", now); err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyAPIG(r2, body, lookup, now, DefaultAPIGWindow); err != nil {
			t.Fatalf("SignAPIG output rejected: %v (path %q query %q)", err, path, rawQuery)
		}
	})
}

func FuzzVerifyBodySignHeader(f *testing.F) {
	f.Add("TestAccessKey123", `sign_type="HMAC-SHA256", signature= "nuyLSQkO1L1v2ReITnI/46z0bFG+dhP8OkIXpAyqOiw="`, []byte(`{"resultCode":"000000","resultMsg":"success","instanceId":"b-0001"}`))
	f.Add("k", `signature=",sign_type=`, []byte(nil))
	f.Fuzz(func(t *testing.T, key, header string, body []byte) {
		if err := VerifyBodySignHeader(key, header, body); err != nil {
			mustAuthError(t, err)
		}
		if err := VerifyBodySignHeader(key, BodySignHeader(key, body), body); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzDecryptCredential(f *testing.F) {
	f.Add("TestAccessKey123", "1", "0123456789abcdefoA1bcTFQxviCjqM3Vpjrpg==", "P@ssw0rd!")
	f.Add("TestAccessKey123", "2", "0123456789abcdefABH8yqBSDmhipt1rmCPb+g==", "")
	f.Add("k", "3", "short", "用户")
	f.Fuzz(func(t *testing.T, key, typ, value, plaintext string) {
		if _, err := DecryptCredential(key, typ, value); err != nil {
			var fe *FieldError
			if !errors.Is(err, ErrCredentialInvalid) && !errors.Is(err, ErrCredentialTooLong) && !errors.As(err, &fe) {
				t.Fatalf("unexpected error kind: %v", err)
			}
		}
		if typ != EncryptAES256 && typ != EncryptAES128 {
			return
		}
		enc, err := EncryptCredential(key, typ, plaintext, rand.Reader)
		if err != nil {
			if !errors.Is(err, ErrCredentialTooLong) {
				t.Fatal(err)
			}
			return
		}
		if got, err := DecryptCredential(key, typ, enc); err != nil || got != plaintext {
			t.Fatalf("round trip: %q %v", got, err)
		}
	})
}

func FuzzDecryptClientSecret(f *testing.F) {
	f.Add("AAAA", "secret")
	f.Add("not base64", "")
	f.Add(strings.Repeat("QUFB", 128), "x")
	f.Fuzz(func(t *testing.T, b64, secret string) {
		k := testRSAKey(t)
		if _, _, err := DecryptClientSecret(k, b64); err != nil && !errors.Is(err, ErrClientSecret) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		if len(secret) > 200 {
			return
		}
		enc, err := EncryptClientSecret(&k.PublicKey, secret, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if got, v, err := DecryptClientSecret(k, enc); err != nil || got != secret || v != OAEPSHA256MGF1SHA1 {
			t.Fatalf("round trip: %q %q %v", got, v, err)
		}
	})
}

func FuzzTimeFormats(f *testing.F) {
	f.Add("20221124023618")
	f.Add("20221124023618256")
	f.Add("20220809T080000Z")
	f.Add("1680508066618")
	f.Add("1680508066")
	f.Add("99991231235959999")
	f.Fuzz(func(t *testing.T, s string) {
		if tm, err := ParseExpireTime(s); err == nil {
			if out := map[int]string{14: FormatTime14(tm), 17: FormatTime17(tm)}[len(s)]; out != s {
				t.Fatalf("ParseExpireTime(%q) formats back as %q", s, out)
			}
		}
		if tm, err := ParseKitTimeStamp(s); err == nil && FormatKitTimeStamp(tm) != s {
			t.Fatalf("ParseKitTimeStamp(%q) formats back as %q", s, FormatKitTimeStamp(tm))
		}
		if tm, err := ParseUsageTime(s); err == nil && FormatUsageTime(tm) != s {
			t.Fatalf("ParseUsageTime(%q) formats back as %q", s, FormatUsageTime(tm))
		}
		if tm, v, err := ParseTimestamp(s); err == nil {
			var back string
			if v == VariantMillis {
				back = strconv.FormatInt(tm.UnixMilli(), 10)
			} else {
				back = strconv.FormatInt(tm.Unix(), 10)
			}
			if strings.TrimLeft(back, "0") != strings.TrimLeft(s, "0") {
				t.Fatalf("ParseTimestamp(%q) = %v", s, tm)
			}
		}
	})
}

func FuzzCanonicalJSON(f *testing.F) {
	f.Add([]byte(`{"usage_records":[{"usage_value":"99","instance_id":"i"}]}`))
	f.Add([]byte(`{"b":1,"a":{"d":[1,2,{"z":null}],"c":"\u00e9\ud83d\ude00"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := CanonicalJSON(data)
		if err != nil {
			return
		}
		c2, err := CanonicalJSON(c)
		if err != nil || !bytes.Equal(c, c2) {
			t.Fatalf("not idempotent: %s → %s (%v)", c, c2, err)
		}
		if k, err := KitBody(data); err == nil {
			if _, err := parseJSON(k); err != nil {
				t.Fatalf("KitBody produced invalid JSON %s: %v", k, err)
			}
		}
		a := EscapeNonASCII(c)
		for _, b := range a {
			if b >= 0x80 {
				t.Fatal("non-ASCII left")
			}
		}
		if c3, err := CanonicalJSON(a); err != nil || !bytes.Equal(c3, c) {
			t.Fatalf("escaping changed the value: %s vs %s (%v)", c3, c, err)
		}
	})
}

func FuzzDecodeQueryOrderResponse(f *testing.F) {
	f.Add([]byte(`{"resultCode":"MKT.0000","resultMsg":"Success","orderInfo":{"orderId":"o","orderType":"NEW","createTime":"20220726064736","orderLine":[{"orderLineId":"l","chargingMode":"PERIOD","periodNumber":"1","productInfo":[{"linearValue":10}]}]}}`))
	f.Add([]byte(`{"resultCode":"MKT.0154","resultMsg":"Illegal token"}`))
	// Huge exponents, which Number.Int64 decides without expanding them.
	f.Add([]byte(`{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","orderLine":[{"orderLineId":"l","periodNumber":1e99999999,"productInfo":[{"linearValue":"9E+999999999"}]}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := DecodeQueryOrderResponse(body); err != nil {
			mustFieldError(t, err)
		}
		if _, err := DecodeQueryInstanceResponse(body); err != nil {
			mustFieldError(t, err)
		}
		if _, _, err := DecodeUsagePush(body); err != nil {
			mustFieldError(t, err)
		}
	})
}

// FuzzParseUsageValue: an accepted usage value is a Double(12,4) (≥ 0, below
// 1e8, at most 4 decimals), equal to the number the text denotes, and
// formats back to text that parses to the same value.
func FuzzParseUsageValue(f *testing.F) {
	for _, s := range []string{"1", "0.5", "12.3456", "0", "-1", "1e3", "1.23456", "99999999.9999", "100000000", " 7 ", "00.10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseUsageValue(s, false)
		if err != nil {
			if _, err2 := ParseUsageValue(s, true); err2 == nil {
				t.Fatalf("%q: refused as ≥ 0 (%v) but accepted as > 0", s, err)
			}
			return
		}
		if v < 0 || v > MaxUsageValue {
			t.Fatalf("%q → %d: outside Double(12,4)", s, v)
		}
		if p, err := ParseUsageValue(s, true); (v == 0) != (err != nil) || (err == nil && p != v) {
			t.Fatalf("%q: positive=true gives %d, %v", s, p, err)
		}
		if n := Number(strings.TrimSpace(s)); n.Decimals() > 4 {
			t.Fatalf("%q → %d with %d decimals", s, v, n.Decimals())
		}
		if fl, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err != nil || math.Abs(fl-float64(v)/UsageValueScale) > 1e-6 {
			t.Fatalf("%q → %d, but the number is %v (%v)", s, v, fl, err)
		}
		back, err := ParseUsageValue(FormatUsageValue(v), true)
		if v > 0 && (err != nil || back != v) {
			t.Fatalf("%q → %d → %q → %d, %v", s, v, FormatUsageValue(v), back, err)
		}
	})
}

func FuzzDecodeUsagePush(f *testing.F) {
	f.Add([]byte(`{"usage_records":[{"begin_time":"20261122T100000Z","end_time":"20261122T110000Z","instance_id":"i","metering_sn":"sn","record_time":"20261122T110000Z","usage_value":"1.5"}]}`))
	f.Add([]byte(`{"usage_records":[{"begin_time":"","end_time":"x","instance_id":"i","metering_sn":"","usage_value":123456789}]}`))
	f.Add([]byte(`{"usage_records":"[{\"metering_sn\":\"a\"}]"}`))
	f.Add([]byte(`{"usage_records":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, bad, err := DecodeUsagePush(body)
		if err != nil {
			mustFieldError(t, err)
			return
		}
		wrong := map[int]bool{}
		for _, e := range bad {
			if e.Index < 0 || e.Index >= len(req.UsageRecords) || e.Code == "" || wrong[e.Index] {
				t.Fatalf("record error %+v of %d records", e, len(req.UsageRecords))
			}
			wrong[e.Index] = true
		}
		// The records found well-formed encode: what the market accepts, a
		// merchant could have sent.
		var ok UsagePushRequest
		for i, r := range req.UsageRecords {
			if !wrong[i] {
				ok.UsageRecords = append(ok.UsageRecords, r)
			}
		}
		if len(ok.UsageRecords) > 0 {
			if _, err := EncodeUsagePush(&ok); err != nil {
				t.Fatalf("well-formed records do not encode: %v", err)
			}
		}
	})
}
