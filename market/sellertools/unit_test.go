package sellertools

import (
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/market"
)

func TestParseDialTimes(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    []slotTime
		wantErr bool
	}{
		{[]string{"15:00", "09:00"}, []slotTime{{9, 0}, {15, 0}}, false},
		{[]string{"09:30", "09:30", " 21:05 "}, []slotTime{{9, 30}, {21, 5}}, false},
		{[]string{"24:00"}, nil, true},
		{[]string{"9"}, nil, true},
		{[]string{"09:5"}, nil, true},
		{[]string{"ab:cd"}, nil, true},
	} {
		got, err := parseDialTimes(tc.in)
		if (err != nil) != tc.wantErr {
			t.Fatalf("%v: err = %v", tc.in, err)
		}
		if !tc.wantErr && (len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) || got[len(got)-1] != tc.want[len(tc.want)-1]) {
			t.Fatalf("%v: got %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestNextSlot(t *testing.T) {
	tl := &Tools{loc: DefaultLocation, slots: []slotTime{{9, 0}, {15, 0}}}
	bj := func(d, h, m int) time.Time { return time.Date(2026, 3, d, h, m, 0, 0, DefaultLocation) }
	for _, tc := range []struct{ after, want time.Time }{
		{bj(2, 8, 59), bj(2, 9, 0)},
		{bj(2, 9, 0), bj(2, 15, 0)}, // strictly after
		{bj(2, 14, 0), bj(2, 15, 0)},
		{bj(2, 15, 0), bj(3, 9, 0)},
		{bj(2, 23, 59), bj(3, 9, 0)},
		{time.Date(2026, 3, 31, 20, 0, 0, 0, DefaultLocation), time.Date(2026, 4, 1, 9, 0, 0, 0, DefaultLocation)},
		{time.Date(2026, 3, 2, 16, 0, 0, 0, time.UTC), bj(3, 9, 0)}, // 00:00 in Beijing
	} {
		if got := tl.nextSlot(tc.after); !got.Equal(tc.want) {
			t.Errorf("nextSlot(%s) = %s, want %s", tc.after, got, tc.want)
		}
	}
}

func TestNextStreak(t *testing.T) {
	tl := &Tools{loc: DefaultLocation, freezeDays: 5}
	now := time.Date(2026, 3, 10, 1, 0, 0, 0, time.UTC)
	onSale := func(streak int, start, last string) Listing {
		return Listing{Status: StatusOnSale, FailStreak: streak, StreakStartDay: start, LastFailDay: last}
	}
	for _, tc := range []struct {
		name       string
		in         Listing
		day        string
		passed     bool
		unfreeze   bool
		wantStreak int
		wantStart  string
		wantStatus string
		wantFroze  bool
	}{
		{"first failure", onSale(0, "", ""), "2026-03-10", false, false, 1, "2026-03-10", StatusOnSale, false},
		{"same day counts once", onSale(1, "2026-03-10", "2026-03-10"), "2026-03-10", false, false, 1, "2026-03-10", StatusOnSale, false},
		{"next day", onSale(1, "2026-03-09", "2026-03-09"), "2026-03-10", false, false, 2, "2026-03-09", StatusOnSale, false},
		{"across a month", onSale(2, "2026-02-27", "2026-02-28"), "2026-03-01", false, false, 3, "2026-02-27", StatusOnSale, false},
		{"a day without runs restarts", onSale(3, "2026-03-05", "2026-03-07"), "2026-03-09", false, false, 1, "2026-03-09", StatusOnSale, false},
		{"fifth day freezes", onSale(4, "2026-03-06", "2026-03-09"), "2026-03-10", false, false, 5, "2026-03-06", StatusFrozen, true},
		{"success resets", onSale(4, "2026-03-06", "2026-03-09"), "2026-03-10", true, false, 0, "", StatusOnSale, false},
		{"frozen stays frozen on success", Listing{Status: StatusFrozen, FailStreak: 5}, "2026-03-10", true, false, 0, "", StatusFrozen, false},
		{"frozen does not refreeze", Listing{Status: StatusFrozen, FailStreak: 5, StreakStartDay: "2026-03-05", LastFailDay: "2026-03-09"}, "2026-03-10", false, false, 6, "2026-03-05", StatusFrozen, false},
		{"unfreeze on success", Listing{Status: StatusFrozen, FailStreak: 5}, "2026-03-10", true, true, 0, "", StatusOnSale, false},
		{"no unfreeze on failure", Listing{Status: StatusFrozen, FailStreak: 5, LastFailDay: "2026-03-10"}, "2026-03-10", false, true, 5, "", StatusFrozen, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, froze := tl.nextStreak(tc.in, tc.day, tc.passed, tc.unfreeze, now)
			if got.FailStreak != tc.wantStreak || got.StreakStartDay != tc.wantStart || got.Status != tc.wantStatus || froze != tc.wantFroze {
				t.Fatalf("got %+v froze=%v", got, froze)
			}
			if froze && !got.FrozenAt.Equal(now) {
				t.Fatalf("frozenAt = %s", got.FrozenAt)
			}
		})
	}
}

func TestBuildBody(t *testing.T) {
	for _, tc := range []struct {
		activity string
		params   map[string]string
		want     string
		field    string
	}{
		{"newInstance", map[string]string{"orderId": "O", "orderLineId": "O-1", "businessId": "b", "testFlag": "1"},
			`{"activity":"newInstance","orderId":"O","orderLineId":"O-1","businessId":"b","testFlag":"1"}`, ""},
		{"releaseInstance", map[string]string{"instanceId": "i"}, `{"activity":"releaseInstance","instanceId":"i"}`, ""},
		{"changeInstanceCheck", map[string]string{"instanceId": "i", "productInfo": `{ "productId": "p", "linearValue": 3 }`},
			`{"activity":"changeInstanceCheck","instanceId":"i","productInfo":{"productId":"p","linearValue":3}}`, ""},
		{"queryInstance", map[string]string{"instanceId": `a"b`}, `{"activity":"queryInstance","instanceId":"a\"b"}`, ""},
		{"queryInstance", map[string]string{}, "", "params.instanceId"},
		{"queryInstance", map[string]string{"instanceId": "i", "testFlag": "2"}, "", "params.testFlag"},
		{"updateInstanceStatus", map[string]string{"instanceId": "i", "status": "NORMAL"}, "", "params.status"},
		{"newInstance", map[string]string{"orderId": strings.Repeat("x", 65), "orderLineId": "l", "businessId": "b"}, "", "params.orderId"},
		{"changeInstanceCheck", map[string]string{"instanceId": "i", "productInfo": `[1]`}, "", "params.productInfo"},
		{"orderNotify", map[string]string{"orderId": "o", "orderLineId": "l"}, "", "params.testFlag"},
	} {
		in, _ := lookupInterface(tc.activity)
		got, err := buildBody(in, tc.params)
		if tc.field != "" {
			var me *market.Error
			if err == nil || !asMarketError(err, &me) || me.Field != tc.field {
				t.Fatalf("%s %v: err = %v, want field %s", tc.activity, tc.params, err, tc.field)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Fatalf("%s: got %s, %v; want %s", tc.activity, got, err, tc.want)
		}
	}
}

func asMarketError(err error, me **market.Error) bool {
	e, ok := err.(*market.Error)
	*me = e
	return ok
}

func TestCurlQuoting(t *testing.T) {
	got := curl("https://x.example.com/p?a=1&b=2", []byte(`{"k":"it's"}`))
	want := `curl -sS -X POST 'https://x.example.com/p?a=1&b=2' -H 'Accept: application/json' -H 'Content-Type: application/json;charset=utf8' --data-raw '{"k":"it'"'"'s"}'`
	if got != want {
		t.Fatalf("curl =\n%s\nwant\n%s", got, want)
	}
}

func TestWarnings(t *testing.T) {
	q := Command{Activity: "queryInstance", Params: map[string]string{"instanceId": "a, b"}}
	res := market.CallResult{Verdict: market.VerdictSuccess, BodySign: "ok", Response: market.Response{ResultCode: "000000",
		Info: []market.InstanceInfo{{InstanceID: "a", AppInfo: &market.AppInfo{}}}}}
	got := warnings(q, res)
	if len(got) != 2 || !strings.Contains(got[0], "instance a has no appInfo.frontEndUrl") || !strings.Contains(got[1], "no entry for instance b") {
		t.Fatalf("queryInstance warnings = %q", got)
	}
	n := Command{Activity: "newInstance"}
	got = warnings(n, market.CallResult{Verdict: market.VerdictInProgress, BodySign: "absent"})
	if len(got) != 2 {
		t.Fatalf("newInstance warnings = %q", got)
	}
	if got := warnings(n, market.CallResult{Verdict: market.VerdictSuccess, BodySign: "ok"}); len(got) != 0 {
		t.Fatalf("clean newInstance warnings = %q", got)
	}
}
