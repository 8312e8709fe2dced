package kg

import (
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The vectors of docs/koogallery/README.md (key TestAccessKey123) and the
// computed check values of joint-kit.md §6 (key testAccessKey).
const vecKey = "TestAccessKey123"

func TestVectorV2Signature(t *testing.T) {
	tests := []struct {
		name, key, nonce, ts, body, want string
	}{
		{"readme", vecKey, "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA", "1680508066618",
			`{"activity":"newInstance","businessId":"b-0001","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}`,
			"092e116c0f2d1b696da9e05781613862d0f72c3ef5cc6469d2bd36d69e09a099"},
		{"joint-kit 6.2", "testAccessKey", "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA", "1680508066618",
			`{"activity":"newInstance","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}`,
			"a0b6b145e1bb2cee1be40708b5f0287b6bc4529bcb8f78c64d21053e2e8a9cab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := SignV2(tc.key, tc.nonce, tc.ts, []byte(tc.body))
			if got != strings.ToUpper(tc.want) {
				t.Fatalf("SignV2 = %s, want %s", got, strings.ToUpper(tc.want))
			}
			now := time.UnixMilli(1680508066618 + 1500)
			for _, sig := range []string{tc.want, strings.ToUpper(tc.want)} {
				idx, variant, err := VerifyV2([]string{"other", tc.key}, sig, tc.nonce, tc.ts, []byte(tc.body), now, DefaultWindow)
				if err != nil || idx != 1 || variant != VariantMillis {
					t.Fatalf("VerifyV2(%s) = %d, %q, %v", sig, idx, variant, err)
				}
			}
		})
	}
}

func TestVectorPayloadMac(t *testing.T) {
	body := `{"activity":"newInstance","businessId":"b-0001","orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}`
	if got := hex.EncodeToString(hmacSHA256([]byte(vecKey), []byte(body))); got != "93d78d29e75a234982ae41dd2814316e87b331c929756bfffd5c5cfb095d22cc" {
		t.Fatalf("payloadMac = %s", got)
	}
}

func TestVectorBodySign(t *testing.T) {
	tests := []struct{ key, body, want string }{
		{vecKey, `{"resultCode":"000000","resultMsg":"success","instanceId":"b-0001"}`, "nuyLSQkO1L1v2ReITnI/46z0bFG+dhP8OkIXpAyqOiw="},
		{"testAccessKey", `{"resultCode":"000000","resultMsg":"Success"}`, "IOGE6BBzVgY9Hoc1eXdkQzVfvmQDSPtsBtKK1kCwniM="},
	}
	for _, tc := range tests {
		h := BodySignHeader(tc.key, []byte(tc.body))
		want := `sign_type="HMAC-SHA256", signature= "` + tc.want + `"`
		if h != want {
			t.Fatalf("BodySignHeader = %s, want %s", h, want)
		}
		if err := VerifyBodySignHeader(tc.key, h, []byte(tc.body)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVectorSHA1PRNG(t *testing.T) {
	tests := []struct {
		bits int
		want string
	}{
		{128, "27af0d530f758ffeb60dcd0863b36601"},
		{256, "27af0d530f758ffeb60dcd0863b36601c07e827eff655c34a30016d4beadad2d"},
	}
	for _, tc := range tests {
		k, err := SHA1PRNGKey(vecKey, tc.bits)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(k); got != tc.want {
			t.Fatalf("%d-bit key = %s, want %s", tc.bits, got, tc.want)
		}
	}
}

func TestVectorCredential(t *testing.T) {
	tests := []struct{ typ, want string }{
		{EncryptAES256, "0123456789abcdefoA1bcTFQxviCjqM3Vpjrpg=="},
		{EncryptAES128, "0123456789abcdefABH8yqBSDmhipt1rmCPb+g=="},
	}
	for _, tc := range tests {
		got, err := EncryptCredentialIV(vecKey, tc.typ, "0123456789abcdef", "P@ssw0rd!")
		if err != nil || got != tc.want {
			t.Fatalf("encryptType %s: %q, %v; want %q", tc.typ, got, err, tc.want)
		}
		pt, err := DecryptCredential(vecKey, tc.typ, tc.want)
		if err != nil || pt != "P@ssw0rd!" {
			t.Fatalf("decrypt %s: %q, %v", tc.typ, pt, err)
		}
	}
}

func TestVectorUsageSignature(t *testing.T) {
	body := `{"usage_records":[{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z","instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721","metering_sn":"sn-0001","record_time":"20220809T091000Z","usage_value":"99"}]}`
	got := UsageSignature(vecKey, "1709690865879", "6c63c221-1f6b-4141-8ff4-22f5dfe82b65", []byte(body))
	if got != "T2myzy8KfShYxpwFj7baZQGvi2QumxGFs0XVtuiA17Q=" {
		t.Fatalf("UsageSignature = %s", got)
	}
}

func TestVectorAuthTokenV1(t *testing.T) {
	tests := []struct {
		key, ts string
		params  map[string]string
		want    string
	}{
		{vecKey, "20200727073711903", map[string]string{"activity": "newInstance", "businessId": "b-0001", "testFlag": "1", "timeStamp": "20200727073711903", "authToken": "ignored"},
			"EBXfJnPj/sah3jjf81Q9sO2P7gqWR/ZWuJXA9NkPBMc="},
		{"testAccessKey", "20220413093539534", map[string]string{"domainName": "https://example.tenantaccount.com", "flag": "1", "instanceId": "huaiweitest123456", "name": "huaiweitest", "orderId": "CS1906666666ABCDE", "tenantCode": "huawei", "tenantId": "68cbc86880d92f36422fa0e", "testFlag": "0", "timeStamp": "20220413093539534"},
			"EFHwOzvATvpKTI0CZ8xSJ76XXrpiKmf1wlSaqXF/PEc="},
	}
	for _, tc := range tests {
		if got := AuthTokenV1(tc.key, tc.ts, tc.params); got != tc.want {
			t.Fatalf("AuthTokenV1 = %s, want %s", got, tc.want)
		}
		if err := VerifyAuthTokenV1(tc.key, tc.ts, tc.want, tc.params); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVectorKitSign(t *testing.T) {
	tests := []struct{ key, nonce, ts, body, want string }{
		{vecKey, "n1", "1680508066618", `{"a":1}`, "4c1507184a6f4011fabeab61496813b0b4d9f9cbc6a0c40509f631d4bffd239a"},
		{"testAccessKey", "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA", "1680508066618",
			`{"domainName":"https://example.tenantaccount.com","flag":1,"instanceId":"huaiweitest123456","name":"huaiweitest","orderId":"CS1906666666ABCDE","tenantCode":"huawei","tenantId":"68cbc86880d92f36422fa0e","testFlag":0,"timeStamp":"20220413093539534"}`,
			"A5D484E1B3DAC593CD4138018780434D8AB449362A8C8554C38E00054BB40D3A"},
	}
	for _, tc := range tests {
		if got := KitSign(tc.key, tc.nonce, tc.ts, []byte(tc.body)); got != strings.ToUpper(tc.want) {
			t.Fatalf("KitSign = %s, want %s", got, tc.want)
		}
		v, err := VerifyKitSign([]string{tc.key}, strings.ToLower(tc.want), tc.nonce, tc.ts, []byte(tc.body), time.UnixMilli(1680508066618), DefaultWindow)
		if err != nil || v != KitVariantRaw {
			t.Fatalf("VerifyKitSign = %q, %v", v, err)
		}
	}
}

// The joint-kit.md §6.1 vector signs the sorted form of the tenantSync example,
// which KooGallery sends in table order: it must verify as "sorted".
func TestVectorKitSignSortedVariant(t *testing.T) {
	body := `{"instanceId":"huaiweitest123456","orderId":"CS1906666666ABCDE","tenantId":"68cbc86880d92f36422fa0e",
 "tenantCode":"huawei","name":"huaiweitest","domainName":"https://example.tenantaccount.com",
 "flag":1,"testFlag":0,"timeStamp":"20220413093539534","extra":null}`
	v, err := VerifyKitSign([]string{"testAccessKey"}, "A5D484E1B3DAC593CD4138018780434D8AB449362A8C8554C38E00054BB40D3A",
		"50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA", "1680508066618", []byte(body), time.UnixMilli(1680508066618), DefaultWindow)
	if err != nil || v != KitVariantSorted {
		t.Fatalf("VerifyKitSign = %q, %v; want sorted", v, err)
	}
}

// joint-kit.md §8.3: the Ruby gem vector (signed headers content-type;host;x-sdk-date;x-stage).
func TestVectorAPIG(t *testing.T) {
	r, _ := http.NewRequest("POST", "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/activate", nil)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Sdk-Date", "20240317T144237Z")
	r.Header.Set("x-stage", "RELEASE")
	signed := []string{"content-type", "host", "x-sdk-date", "x-stage"}
	cr := APIGCanonicalRequest(r, hexSHA256(nil), signed)
	wantCR := "POST\n/api/mkp-openapi-public/global/v1/license/activate/\n\ncontent-type:application/json\nhost:mkt.myhuaweicloud.com\nx-sdk-date:20240317T144237Z\nx-stage:RELEASE\n\ncontent-type;host;x-sdk-date;x-stage\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if cr != wantCR {
		t.Fatalf("canonical request:\n%q\nwant\n%q", cr, wantCR)
	}
	sig := hex.EncodeToString(apigSignature(r, hexSHA256(nil), signed, "20240317T144237Z", "123"))
	if sig != "77595ad624b6e4e49990b8c4e84bf1c287457fca61069c4e60b9b6765b52053d" {
		t.Fatalf("signature = %s", sig)
	}
	r.Header.Set("Authorization", "SDK-HMAC-SHA256 Access=ak, SignedHeaders=content-type;host;x-sdk-date;x-stage, Signature="+sig)
	now, _ := time.Parse(APIGDateFormat, "20240317T144500Z")
	ak, err := VerifyAPIG(r, nil, func(string) (string, bool) { return "123", true }, now, DefaultAPIGWindow)
	if err != nil || ak != "ak" {
		t.Fatalf("VerifyAPIG = %q, %v", ak, err)
	}
}
