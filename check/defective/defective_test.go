package defective

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/kg"
)

const key = "TestAccessKey123"

var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func post(t testing.TB, m http.Handler, body string, sign bool, nonce string) (int, map[string]any, http.Header) {
	t.Helper()
	target := "/saasproduce"
	if sign {
		ts := strconv.FormatInt(now.UnixMilli(), 10)
		target += "?signature=" + kg.SignV2(key, nonce, ts, []byte(body)) + "&timestamp=" + ts + "&nonce=" + nonce
	}
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	if h := rec.Header().Get("Body-Sign"); h != "" {
		if err := kg.VerifyBodySignHeader(key, h, rec.Body.Bytes()); err != nil {
			t.Errorf("Body-Sign: %v", err)
		}
	}
	return rec.Code, out, rec.Header()
}

func TestDefectFreeBasics(t *testing.T) {
	m := New(Config{AccessKey: key, Clock: clock.Func(func() time.Time { return now })})
	cases := []struct {
		name, body string
		sign       bool
		nonce      string
		want       string
	}{
		{"create", `{"activity":"newInstance","businessId":"b1","orderId":"o1","orderLineId":"o1-1"}`, true, "n1", kg.CodeSuccess},
		{"unsigned", `{"activity":"newInstance","businessId":"b1","orderId":"o1","orderLineId":"o1-1"}`, false, "", kg.CodeAuthFailed},
		{"replayed nonce", `{"activity":"queryInstance","instanceId":"x"}`, true, "n1", kg.CodeAuthFailed},
		{"missing field", `{"activity":"newInstance","orderId":"o1","orderLineId":"o1-1"}`, true, "n2", kg.CodeBadParam},
		{"unknown instance", `{"activity":"releaseInstance","instanceId":"nope"}`, true, "n3", kg.CodeNoInstance},
		{"bad status", `{"activity":"updateInstanceStatus","instanceId":"x","status":"PAUSE"}`, true, "n4", kg.CodeBadParam},
		{"unknown activity", `{"activity":"explode"}`, true, "n5", kg.CodeBadParam},
	}
	for _, c := range cases {
		code, out, _ := post(t, m, c.body, c.sign, c.nonce)
		if code != 200 || out["resultCode"] != c.want {
			t.Errorf("%s: HTTP %d %v, want 200 %s", c.name, code, out, c.want)
		}
	}
}

// FuzzServe sends arbitrary signed bodies: the merchant never panics and
// always answers HTTP 200 with a JSON resultCode.
func FuzzServe(f *testing.F) {
	for _, s := range []string{
		`{"activity":"newInstance","businessId":"b1","orderId":"o1","orderLineId":"o1-1"}`,
		`{"activity":"queryInstance","instanceId":"a,b,c"}`,
		`{"activity":"refreshInstance","orderId":"o","orderLineId":"l","instanceId":"i","scene":"RENEWAL","expireTime":"20261301000000"}`,
		`{"activity":"changeInstanceCheck","instanceId":"i","productInfo":"{\"productId\":\"p\"}"}`,
		`{"activity":["x"]}`, `[]`, ``, `{"activity":"newInstance","orderId":{"a":1}}`,
	} {
		f.Add(s)
	}
	m := New(Config{AccessKey: key, Clock: clock.Func(func() time.Time { return now }), EncryptType: "1"})
	n := 0
	f.Fuzz(func(t *testing.T, body string) {
		n++
		code, out, _ := post(t, m, body, true, "fuzz-"+strconv.Itoa(n))
		if code != 200 {
			t.Fatalf("HTTP %d for %q", code, body)
		}
		if rc, ok := out["resultCode"].(string); !ok || len(rc) != 6 {
			t.Fatalf("answer %v for %q has no 6-character resultCode", out, body)
		}
	})
}
