package merchant

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/kg"
)

// Records the marketplace refuses one by one: accepted duplicates and final
// refusals are settled, transient ones are retried until accepted.
func TestUsagePushPerRecordFailures(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.market.addOrder("UF1", "UF1-000001", ChargingOnDemand, "prod-od", "sku-od")
		id := e.call(newInstanceBody("UF1", "UF1-000001", "biz-uf", false)).InstanceID
		e.market.mu.Lock()
		e.market.refuse = map[string]string{"dup": kg.UsageErrDuplicateRecord, "old": kg.UsageErrRecordExpired, "later": kg.UsageErrInstanceStatus}
		e.market.mu.Unlock()
		var recs []any
		for _, sn := range []string{"ok1", "dup", "old", "later", "ok2"} {
			recs = append(recs, map[string]any{"meteringSn": sn, "usageValue": "1", "beginTime": "20260101T000000Z", "endTime": "20260101T010000Z"})
		}
		if code, body := e.api("POST", "/api/v1/instances/"+id+"/usage", map[string]any{"records": recs}, testAdmin); code != 200 {
			t.Fatalf("record: %d %v", code, body)
		}
		e.runJobs(time.Second)
		results := map[string]string{}
		rows, err := e.db.Query(e.ctx, `SELECT metering_sn, pushed_at, push_result FROM merchant_usage`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var sn, res string
			var at int64
			if err := rows.Scan(&sn, &at, &res); err != nil {
				t.Fatal(err)
			}
			if at == 0 {
				res = "pending"
			}
			results[sn] = res
		}
		rows.Close()
		if results["later"] != "pending" || !strings.HasPrefix(results["old"], "rejected 007") || !strings.HasPrefix(results["dup"], "duplicate") ||
			results["ok1"] == "pending" || results["ok2"] == "pending" {
			t.Fatalf("after the first push: %v", results)
		}
		// The vendor app sees the outcome through the management API.
		listed := func(query string) []string {
			t.Helper()
			code, body := e.api("GET", "/api/v1/instances/"+id+"/usage"+query, nil, testAdmin)
			if code != 200 {
				t.Fatalf("list usage%s: %d %v", query, code, body)
			}
			var out []string
			for _, r := range body["records"].([]any) {
				rec := r.(map[string]any)
				out = append(out, rec["meteringSn"].(string)+":"+rec["state"].(string))
				if rec["meteringSn"] == "old" && !strings.HasPrefix(rec["result"].(string), "rejected 007") {
					t.Errorf("old's result = %v", rec["result"])
				}
			}
			return out
		}
		if got := listed("?state=rejected"); len(got) != 1 || got[0] != "old:rejected" {
			t.Errorf("rejected records = %v", got)
		}
		if got := listed("?state=pending"); len(got) != 1 || got[0] != "later:pending" {
			t.Errorf("pending records = %v", got)
		}
		if got := listed("?state=pushed"); len(got) != 3 {
			t.Errorf("pushed records = %v", got)
		}
		if got := listed("?limit=2"); len(got) != 2 {
			t.Errorf("limit=2 gave %v", got)
		}
		if got := listed(""); len(got) != 5 {
			t.Errorf("all records = %v", got)
		}
		if code, body := e.api("GET", "/api/v1/instances/"+id+"/usage?state=lost", nil, testAdmin); code != 400 || body["field"] != "state" {
			t.Errorf("bad state: %d %v", code, body)
		}
		if code, _ := e.api("GET", "/api/v1/instances/nope/usage", nil, testAdmin); code != 404 {
			t.Errorf("unknown instance: %d", code)
		}
		// The transient refusal clears up: the next attempt pushes only it.
		e.market.mu.Lock()
		delete(e.market.refuse, "later")
		before := len(e.market.pushes)
		e.market.mu.Unlock()
		e.runJobs(2 * time.Hour)
		if n := e.count(`SELECT COUNT(*) FROM merchant_usage WHERE pushed_at = 0`); n != 0 {
			t.Fatalf("%d records still pending", n)
		}
		e.market.mu.Lock()
		last := e.market.pushes[len(e.market.pushes)-1]
		pushes := len(e.market.pushes) - before
		e.market.mu.Unlock()
		if pushes != 1 || len(last) != 1 || last[0]["metering_sn"] != "later" {
			t.Fatalf("retry pushed %d calls, last %v", pushes, last)
		}
	})
}

func TestParseUsageAnswer(t *testing.T) {
	recs := []wireUsage{{MeteringSN: "a"}, {MeteringSN: "b"}}
	cases := []struct {
		name   string
		status int
		body   string
		failed map[string]string
		err    bool
	}{
		{"ok", 200, `{"resultCode":"MKT.0000","resultMsg":"Success"}`, nil, false},
		{"ok error_code", 200, `{"error_code":"MKT.0000"}`, nil, false},
		{"empty 200", 200, ``, nil, false},
		{"per record by index", 500, `{"resultCode":"MKT.9002","extra_info":{"failed":[{"index":1,"error_code":"005","error_msg":"dup"}]}}`, map[string]string{"b": "005"}, false},
		{"per record by sn", 500, `{"error_code":"MKT.9002","extra_info":{"failed":[{"metering_sn":"a","error_code":"001"}]}}`, map[string]string{"a": "001"}, false},
		{"bad index", 500, `{"resultCode":"MKT.9002","extra_info":{"failed":[{"index":9,"error_code":"005"}]}}`, nil, true},
		{"refused", 400, `{"resultCode":"MKT.0102","resultMsg":"bad signature"}`, nil, true},
		{"500 html", 500, `<html>`, nil, true},
		{"200 but failure code", 200, `{"resultCode":"MKT.0999"}`, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			failed, err := parseUsageAnswer(c.status, []byte(c.body), recs)
			if (err != nil) != c.err {
				t.Fatalf("err %v, want error=%v", err, c.err)
			}
			if len(failed) != len(c.failed) {
				t.Fatalf("failed %v, want %v", failed, c.failed)
			}
			for sn, code := range c.failed {
				if failed[sn].Code != code {
					t.Fatalf("failed %v, want %v", failed, c.failed)
				}
			}
		})
	}
	if acc, final := (UsageRecordFailure{Code: "010"}).Settled(); !acc || !final {
		t.Fatal("duplicate record must count as accepted")
	}
	if _, final := (UsageRecordFailure{Code: "013"}).Settled(); final {
		t.Fatal("instance status must be retried")
	}
	_ = http.StatusOK
}

// The usage-push body is signed "after natural sorting" (saas-v2.md §5.2):
// souk sends exactly the naturally sorted body (kg.CanonicalJSON,
// docs/protocol.md), so that a marketplace that re-serializes the body with
// sorted keys before checking the signature computes the bytes souk signed.
// json.Marshal's HTML escaping (\u003c for '<', \u0026 for '&') made the two
// readings differ for a metering_sn or relate_pkg_instance holding one of
// them.
func TestUsagePushBodyIsNaturallySorted(t *testing.T) {
	var body []byte
	var hdr http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		hdr = r.Header.Clone()
		_, _ = io.WriteString(w, `{"error_code":"MKT.0000","error_msg":"success"}`)
	}))
	defer srv.Close()
	c := &UsageClient{BaseURL: srv.URL, AccessKey: testKey, Clock: clock.NewVirtual(time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)), Rand: rand.Reader}
	recs := []wireUsage{{BeginTime: "20260101T000000Z", EndTime: "20260101T010000Z", InstanceID: "inst-1", MeteringSN: "sn<1>&a",
		RecordTime: "20260101T011000Z", RelatePkgInstance: "pkg>&<", UsageValue: "1.5"}}
	if _, err := c.Push(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	canon, err := kg.CanonicalJSON(body)
	if err != nil {
		t.Fatal(err)
	}
	if string(canon) != string(body) {
		t.Fatalf("pushed body is not the naturally sorted body:\n sent   %s\n sorted %s", body, canon)
	}
	for _, reading := range [][]byte{body, canon} {
		if want := kg.UsageSignature(testKey, hdr.Get("ts"), hdr.Get("nonce"), reading); hdr.Get("signature") != want {
			t.Fatalf("signature %s does not verify over %s", hdr.Get("signature"), reading)
		}
	}
}
