package kg

import "testing"

// The usage-push signature: what UsageSignature makes verifies (raw), under
// another key it does not, and any header is refused without a panic.
func FuzzVerifyUsageSignature(f *testing.F) {
	f.Add("TestAccessKey123", "1669260000000", "n0nce", []byte(`{"usage_records":[{"metering_sn":"a"}]}`), "c2lnbmF0dXJl")
	f.Add("", "", "", []byte(``), "")
	f.Add("k", "1", "n", []byte(`{"b":1,"a":2}`), "!!!")
	f.Fuzz(func(t *testing.T, key, ts, nonce string, body []byte, header string) {
		sig := UsageSignature(key, ts, nonce, body)
		if v, err := VerifyUsageSignature(key, sig, ts, nonce, body); err != nil || v != KitVariantRaw {
			t.Fatalf("own signature: %q %v", v, err)
		}
		if _, err := VerifyUsageSignature(key+"x", sig, ts, nonce, body); err == nil {
			t.Fatal("verified under another key")
		}
		if _, err := VerifyUsageSignature(key, header, ts, nonce, body); err != nil {
			mustAuthError(t, err)
		}
	})
}

// The V1 authToken: what AuthTokenV1 makes verifies, a changed parameter or
// key does not, and any token is refused without a panic.
func FuzzVerifyAuthTokenV1(f *testing.F) {
	f.Add("TestAccessKey123", "20221124023618256", "activity", "newInstance", "orderId", "CS1", "dG9rZW4=")
	f.Add("", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, key, stamp, k1, v1, k2, v2, token string) {
		params := map[string]string{k1: v1, k2: v2}
		tok := AuthTokenV1(key, stamp, params)
		if err := VerifyAuthTokenV1(key, stamp, tok, params); err != nil {
			t.Fatalf("own token: %v", err)
		}
		if err := VerifyAuthTokenV1(key+"x", stamp, tok, params); err == nil {
			t.Fatal("verified under another key")
		}
		if err := VerifyAuthTokenV1(key, stamp, token, params); err != nil {
			mustAuthError(t, err)
		}
	})
}

// The answer decoders souk market and check grade merchants with: any body
// is either decoded or refused with a *FieldError, never a panic.
func FuzzDecodeAnswers(f *testing.F) {
	f.Add([]byte(`{"resultCode":"000000","resultMsg":"ok","instanceId":"i"}`))
	f.Add([]byte(`{"resultCode":"000000","info":[{"instanceId":"i","appInfo":{"frontEndUrl":"https://x","memo":"\u8bf4"}}]}`))
	f.Add([]byte(`{"resultCode":4}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := DecodeResponse(body); err != nil {
			mustFieldError(t, err)
		}
		if _, err := DecodeNewInstanceResponse(body); err != nil {
			mustFieldError(t, err)
		}
		if _, err := DecodeQueryInstanceResponse(body); err != nil {
			mustFieldError(t, err)
		}
	})
}
