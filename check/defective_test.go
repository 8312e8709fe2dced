package check_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/check"
	"github.com/soukhq/souk/check/defective"
)

const testKey = "TestAccessKey123"

// runDefective runs the suite against a defective merchant.
func runDefective(t *testing.T, mc defective.Config, cc check.Config) check.Report {
	t.Helper()
	mc.AccessKey = testKey
	if mc.SlowDelay == 0 {
		mc.SlowDelay = 2500 * time.Millisecond
	}
	m := defective.New(mc)
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	cc.Target = srv.URL + "/saasproduce"
	cc.AccessKey = testKey
	if cc.Timeout == 0 {
		cc.Timeout = 2 * time.Second
	}
	cc.PollInterval = 5 * time.Millisecond
	if cc.AsyncTimeout == 0 {
		cc.AsyncTimeout = 3 * time.Second
	}
	cc.Concurrency = 6
	if cc.ReplayDelay == 0 {
		cc.ReplayDelay = 1500 * time.Millisecond
	}
	stub := check.NewMarketStub("seller-ak", "seller-sk", nil, nil)
	cc.Orders = stub
	market := httptest.NewServer(stub)
	t.Cleanup(market.Close)
	m.SetMarket(market.URL, "seller-ak", "seller-sk")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return check.Run(ctx, cc)
}

func describe(rep check.Report) string {
	var b strings.Builder
	for _, r := range rep.Results {
		if r.Status == check.Pass || r.Status == check.Skip {
			continue
		}
		b.WriteString(string(r.Status) + " " + r.ID + ": " + r.Message + "\n")
	}
	return b.String()
}

func TestDefectFreeMerchantPasses(t *testing.T) {
	cases := []struct {
		name string
		mc   defective.Config
		cc   check.Config
	}{
		{"period", defective.Config{}, check.Config{}},
		{"period, every optional interface", defective.Config{}, check.Config{Upgrade: true, ChangeCheck: true, OrderNotify: true}},
		{"one-time", defective.Config{}, check.Config{Mode: check.ModeOneTime, OrderNotify: true}},
		{"pay-per-use", defective.Config{}, check.Config{Mode: check.ModeOnDemand}},
		{"asynchronous provisioning", defective.Config{Async: true, ReadyAfter: 3}, check.Config{Upgrade: true}},
		{"AES-256 credentials", defective.Config{EncryptType: "1"}, check.Config{}},
		{"AES-128 credentials", defective.Config{EncryptType: "2"}, check.Config{}},
		{"orderNotify with its own key", defective.Config{NotifyKey: "general-key-1"}, check.Config{OrderNotify: true, NotifyKey: "general-key-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rep := runDefective(t, c.mc, c.cc)
			if rep.SetupError != "" {
				t.Fatalf("setup: %s", rep.SetupError)
			}
			if !rep.Passed {
				t.Fatalf("a defect-free merchant failed:\n%s", describe(rep))
			}
			if rep.Counts[check.Warn] > 0 {
				t.Errorf("a defect-free merchant got warnings:\n%s", describe(rep))
			}
			if len(rep.Results) < 30 {
				t.Errorf("only %d checks ran", len(rep.Results))
			}
		})
	}
}

func TestEachDefectIsReported(t *testing.T) {
	period := check.Config{Upgrade: true, ChangeCheck: true, OrderNotify: true}
	cases := []struct {
		defect defective.Defect
		mc     defective.Config
		cc     check.Config
		fails  []string // checks that must fail (the run then fails)
		warns  []string // checks that must warn while the run passes
	}{
		{defect: defective.NotIdempotent, fails: []string{"idem.newInstance.sequential", "idem.newInstance.concurrent", "idem.newInstance.testFlag"}},
		{defect: defective.RacyIdempotency, fails: []string{"idem.newInstance.concurrent"}},
		{defect: defective.IdemOrderOnly, fails: []string{"idem.newInstance.orderLines"}},
		{defect: defective.OneInstance, fails: []string{"idem.newInstance.sequential"}},
		{defect: defective.OneDebugInstance, warns: []string{"idem.newInstance.testFlag"}},
		{defect: defective.ReleaseNotIdempotent, fails: []string{"idem.releaseInstance"}},
		{defect: defective.FreezeNotIdempotent, fails: []string{"idem.freeze", "idem.unfreeze"}},
		{defect: defective.UpgradeNotIdempotent, cc: period, fails: []string{"idem.upgradeInstance"}},
		{defect: defective.RefreshNotIdempotent, fails: []string{"idem.refreshInstance"}},
		{defect: defective.RenewOnce, fails: []string{"idem.refreshInstance"}},
		{defect: defective.UpgradeOnce, cc: period, fails: []string{"idem.upgradeInstance"}},
		{defect: defective.FreezeDeletes, fails: []string{"idem.freeze", "idem.unfreeze", "lifecycle.full"}},
		{defect: defective.ReleaseFrozenRefused, fails: []string{"iface.releaseInstance.frozen"}},
		{defect: defective.RenewFrozenRefused, fails: []string{"iface.refreshInstance.frozen"}},
		{defect: defective.AcceptBadSignature, fails: []string{"sec.signature.missing", "sec.signature.wrong", "sec.signature.otherKey", "sec.body.tampered"}},
		{defect: defective.IgnoreTimestamp, fails: []string{"sec.timestamp.stale", "sec.timestamp.future"}},
		{defect: defective.AcceptFuture, fails: []string{"sec.timestamp.future"}},
		{defect: defective.AcceptReplay, fails: []string{"sec.nonce.replay"}},
		{defect: defective.FirstJSONValueOnly, fails: []string{"sec.body.tampered"}},
		{defect: defective.ApplyBeforeAuth, fails: []string{"sec.signature.wrong", "sec.timestamp.stale", "sec.nonce.replay"}},
		{defect: defective.NoAuthMutations, cc: period, fails: []string{"sec.auth.refreshInstance", "sec.auth.updateInstanceStatus", "sec.auth.upgradeInstance"}},
		{defect: defective.NoAuthNewInstance, fails: []string{"sec.auth.newInstance"}},
		{defect: defective.NoAuthTestFlag, cc: period, fails: []string{"sec.auth.newInstance", "sec.auth.queryInstance", "sec.auth.refreshInstance", "sec.auth.updateInstanceStatus", "sec.auth.releaseInstance", "sec.auth.upgradeInstance", "sec.auth.changeInstanceCheck", "sec.auth.orderNotify"}},
		{defect: defective.NoAuthOrderNotify, cc: period, fails: []string{"sec.auth.orderNotify"}},
		{defect: defective.EitherKey, mc: defective.Config{NotifyKey: "general-key-1"}, cc: check.Config{OrderNotify: true, NotifyKey: "general-key-1"}, fails: []string{"sec.signature.keyKind"}},
		{defect: defective.SignatureOptional, fails: []string{"sec.signature.absent", "sec.auth.releaseInstance", "sec.auth.queryInstance"}},
		{defect: defective.TimestampOptional, fails: []string{"sec.timestamp.missing"}},
		{defect: defective.NonceOptional, fails: []string{"sec.nonce.missing"}},
		{defect: defective.WideWindow, fails: []string{"sec.timestamp.stale", "sec.timestamp.future"}},
		{defect: defective.SecondsNoWindow, fails: []string{"sec.timestamp.stale", "sec.timestamp.future"}},
		{defect: defective.ShortNonceCache, fails: []string{"sec.nonce.replayDelayed"}},
		{defect: defective.NonceSkipTestFlag, fails: []string{"sec.nonce.replay"}},
		{defect: defective.EmptyUsageInfo, cc: check.Config{Mode: check.ModeOnDemand}, fails: []string{"answer.fields"}},
		{defect: defective.ChangeCheck5, cc: period, fails: []string{"iface.changeInstanceCheck"}},
		{defect: defective.ChangeUnknown, cc: period, fails: []string{"input.unknownInstance"}},
		{defect: defective.NoQueryOrder, warns: []string{"iface.newInstance"}},
		{defect: defective.StrictTrial},
		{defect: defective.StrictIDs, warns: []string{"input.unknownInstance.query"}},
		{defect: defective.NoBodySign, warns: []string{"answer.bodySign"}},
		{defect: defective.UnquotedBodySign, warns: []string{"answer.bodySign"}},
		{defect: defective.Redirect, fails: []string{"answer.http200", "iface.newInstance"}},
		{defect: defective.HugeQuery, fails: []string{"answer.json", "iface.queryInstance"}},
		{defect: defective.IVSymbols, mc: defective.Config{EncryptType: "1"}, warns: []string{"answer.credentials"}},
		{defect: defective.MillisOnly, warns: []string{"sec.timestamp.seconds"}},
		{defect: defective.UpperHexOnly, warns: []string{"sec.signature.lowercase"}},
		{defect: defective.WrongCodeBadParam, fails: []string{"input.missing", "input.oversized", "input.illTyped", "input.invalidValue", "input.activity"}},
		{defect: defective.WrongCodeUnknownInstance, fails: []string{"input.unknownInstance"}},
		{defect: defective.NoLengthCheck, fails: []string{"input.oversized"}},
		{defect: defective.LengthCheckNewOnly, cc: period, fails: []string{"input.oversized"}},
		{defect: defective.OrderIDOptional, cc: period, fails: []string{"input.missing"}},
		{defect: defective.OrderIDOptional, cc: check.Config{Mode: check.ModeOneTime, OrderNotify: true}, fails: []string{"input.missing"}},
		{defect: defective.LengthCheckNewOnly, cc: check.Config{Mode: check.ModeOneTime}, warns: []string{"input.oversized"}},
		{defect: defective.AcceptUnknownActivity, fails: []string{"input.activity"}},
		{defect: defective.LaxTypes, fails: []string{"input.illTyped"}},
		{defect: defective.LaxValues, fails: []string{"input.invalidValue"}},
		{defect: defective.RejectTestFlag, fails: []string{"iface.newInstance.testFlag", "iface.queryInstance.testFlag", "iface.releaseInstance.testFlag"}},
		{defect: defective.NoRefresh, fails: []string{"iface.refreshInstance.renewal", "lifecycle.full"}},
		{defect: defective.NoBatchQuery, fails: []string{"iface.queryInstance.batch"}},
		{defect: defective.ShortBatch, fails: []string{"iface.queryInstance.batch"}},
		{defect: defective.QueryListsAll, fails: []string{"answer.fields"}},
		{defect: defective.NoUsageInfo, cc: check.Config{Mode: check.ModeOnDemand}, fails: []string{"answer.fields"}},
		{defect: defective.AsyncNeverReady, cc: check.Config{AsyncTimeout: 150 * time.Millisecond}, fails: []string{"async.newInstance", "iface.queryInstance"}},
		{defect: defective.SlowQuery, mc: defective.Config{SlowDelay: 400 * time.Millisecond}, cc: check.Config{Timeout: 250 * time.Millisecond}, fails: []string{"answer.latency"}},
		{defect: defective.EncryptRawKey, mc: defective.Config{EncryptType: "1"}, fails: []string{"answer.credentials"}},
		{defect: defective.CredentialTooLong, mc: defective.Config{EncryptType: "2"}, fails: []string{"answer.credentials"}},
		{defect: defective.DropInstanceID, fails: []string{"iface.newInstance", "answer.fields"}},
		{defect: defective.NumericResultCode, fails: []string{"answer.fields"}},
		{defect: defective.LongResultMsg, fails: []string{"answer.fields"}},
		{defect: defective.BadBodySign, fails: []string{"answer.bodySign"}},
		{defect: defective.BodySignNotifyKey, mc: defective.Config{NotifyKey: "general-key-1"}, cc: check.Config{OrderNotify: true, NotifyKey: "general-key-1"}, fails: []string{"answer.bodySign"}},
		{defect: defective.HTTP500OnError, warns: []string{"answer.http200"}},
		{defect: defective.HTTPAccepted, fails: []string{"answer.http200"}},
		{defect: defective.NonJSONQuery, fails: []string{"answer.json", "iface.queryInstance"}},
		{defect: defective.UnescapedMemo, fails: []string{"answer.memo"}},
		{defect: defective.ReleasedStillShown, warns: []string{"lifecycle.full"}},
	}
	covered := map[defective.Defect]bool{}
	for _, c := range cases {
		covered[c.defect] = true
		t.Run(string(c.defect), func(t *testing.T) {
			t.Parallel()
			mc := c.mc
			mc.Defects = []defective.Defect{c.defect}
			rep := runDefective(t, mc, c.cc)
			if rep.SetupError != "" {
				t.Fatalf("setup: %s", rep.SetupError)
			}
			for _, id := range c.fails {
				r, ok := rep.Result(id)
				if !ok {
					t.Errorf("check %s did not run", id)
					continue
				}
				if r.Status != check.Fail {
					t.Errorf("check %s: status %s, want FAIL", id, r.Status)
					continue
				}
				for _, f := range r.Findings {
					if f.Severity == check.Fail && (f.What == "" || f.Want == "" || f.Ref == "") {
						t.Errorf("check %s: finding without what/want/ref: %+v", id, f)
					}
				}
			}
			if len(c.fails) > 0 && rep.Passed {
				t.Errorf("the run passed despite %s", c.defect)
			}
			for _, id := range c.warns {
				r, ok := rep.Result(id)
				if !ok || r.Status != check.Warn {
					t.Errorf("check %s: status %v, want WARN", id, r.Status)
				}
			}
			if len(c.fails) == 0 && !rep.Passed {
				t.Errorf("a warning-only defect failed the run:\n%s", describe(rep))
			}
			if t.Failed() {
				t.Logf("report:\n%s", describe(rep))
			}
		})
	}
	for _, d := range defective.Defects() {
		if !covered[d] {
			t.Errorf("defect %s has no case", d)
		}
	}
}

// An answer over 1 MiB is named as such, and no check accuses the merchant
// of acting on a rejected request because the follow-up query was too large.
func TestOversizedAnswerIsNamed(t *testing.T) {
	rep := runDefective(t, defective.Config{Defects: []defective.Defect{defective.HugeQuery}}, check.Config{Only: []string{"sec.signature", "iface.queryInstance"}})
	r, _ := rep.Result("answer.json")
	if r.Status != check.Fail || !strings.Contains(r.Message, "larger than 1048576 bytes") {
		t.Errorf("answer.json: %s %q, want FAIL naming the size", r.Status, r.Message)
	}
	for _, r := range rep.Results {
		for _, f := range r.Findings {
			if strings.Contains(f.What, "a rejected request changed the instance") {
				t.Errorf("%s accuses: %s", r.ID, f.What)
			}
		}
	}
	if r, _ := rep.Result("sec.signature.wrong"); !strings.Contains(r.Message, "could not tell") {
		t.Errorf("sec.signature.wrong: %s %q, want \"could not tell\"", r.Status, r.Message)
	}
}

// queriedAll pretends the target asked Query Order for every order.
type queriedAll struct{ *check.MarketStub }

func (queriedAll) Queried(string) int { return 1 }

// A target that never fetches check's orders (it is pointed at another
// marketplace) is told so in the async failure; one that fetched them is not.
func TestAsyncFailureNamesUnqueriedOrders(t *testing.T) {
	const hint = "never asked check's Query Order endpoint"
	for _, c := range []struct {
		name     string
		wrap     bool
		wantHint bool
	}{{"never queried", false, true}, {"queried", true, false}} {
		t.Run(c.name, func(t *testing.T) {
			mc := defective.Config{AccessKey: testKey, Defects: []defective.Defect{defective.AsyncNeverReady}}
			srv := httptest.NewServer(defective.New(mc))
			t.Cleanup(srv.Close)
			stub := check.NewMarketStub("seller-ak", "seller-sk", nil, nil)
			cc := check.Config{Target: srv.URL + "/saasproduce", AccessKey: testKey, Timeout: 2 * time.Second,
				AsyncTimeout: 50 * time.Millisecond, PollInterval: 5 * time.Millisecond, Only: []string{"iface.queryInstance"}, Orders: stub}
			if c.wrap {
				cc.Orders = queriedAll{stub}
			}
			rep := check.Run(context.Background(), cc)
			var what string
			for _, r := range rep.Results {
				if r.ID == "iface.queryInstance" {
					for _, f := range r.Findings {
						what += f.What + "\n"
					}
				}
			}
			if !strings.Contains(what, "was not ready") {
				t.Fatalf("iface.queryInstance findings %q; want the async failure\n%s", what, describe(rep))
			}
			if got := strings.Contains(what, hint); got != c.wantHint {
				t.Fatalf("hint present = %v, want %v: %q", got, c.wantHint, what)
			}
		})
	}
}
