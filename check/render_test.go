package check

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"strings"
	"testing"
	"time"
)

func sampleReport() Report {
	return Report{
		Target: "https://isv.example.com/saasproduce", Mode: ModePeriod, Features: []string{FeatureUpgrade},
		Duration: 1500 * time.Millisecond, Passed: false,
		Counts:  map[Status]int{Pass: 1, Fail: 1, Warn: 1, Skip: 1},
		Latency: Latency{Calls: 3, P50: 10 * time.Millisecond, P95: 30 * time.Millisecond, Max: 30 * time.Millisecond},
		Results: []Result{
			{ID: "iface.newInstance", Family: FamilyInterfaces, Title: "create", Mandatory: true, Ref: "saas-v2.md §4.1", Status: Pass, Message: "ok", Duration: time.Millisecond},
			{ID: "sec.nonce.replay", Family: FamilySecurity, Title: "replay", Mandatory: true, Ref: "saas-v2.md §2.2", Status: Fail, Message: "replay accepted",
				Findings: []Finding{{Severity: Fail, What: "replay accepted <&>", Sent: "POST /x {\"a\":1}", Got: "HTTP 200: {}", Want: "000001", Ref: "saas-v2.md §2.2"}}},
			{ID: "sec.timestamp.seconds", Family: FamilySecurity, Title: "seconds", Mandatory: false, Ref: "saas-v2.md §2.2", Status: Warn, Message: "refused",
				Findings: []Finding{{Severity: Warn, What: "refused", Want: "accept", Ref: "saas-v2.md §2.2"}}},
			{ID: "async.newInstance", Family: FamilyAsync, Title: "async", Mandatory: true, Ref: "saas-v2.md §4.1", Status: Skip, Message: "synchronous"},
		},
	}
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, sampleReport(), true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"PASS   iface.newInstance", "FAIL   sec.nonce.replay", "WARN ~ sec.timestamp.seconds", "SKIP",
		"Details", "sent: POST /x", "got:  HTTP 200", "want: 000001", "rule: saas-v2.md §2.2 (in docs/koogallery)",
		"a deviation is a warning, not a failure", "p95 30ms", "Result: FAIL — 1 passed, 1 failed, 1 warnings, 1 skipped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	_ = WriteText(&b, sampleReport(), false)
	if strings.Contains(b.String(), "PASS   iface.newInstance") {
		t.Error("lines=false still lists every check")
	}
}

func TestWriteJUnit(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJUnit(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	var got junitSuites
	if err := xml.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("invalid XML: %v\n%s", err, b.String())
	}
	if got.Tests != 4 || got.Fails != 1 || got.Skipped != 1 || len(got.Suites) != 3 {
		t.Fatalf("tests=%d failures=%d skipped=%d suites=%d, want 4 1 1 3", got.Tests, got.Fails, got.Skipped, len(got.Suites))
	}
	sec := got.Suites[1]
	if sec.Name != FamilySecurity || sec.Fails != 1 || sec.Cases[0].Failure == nil || !strings.Contains(sec.Cases[0].Failure.Body, "replay accepted <&>") {
		t.Errorf("security suite: %+v", sec)
	}
	if w := sec.Cases[1]; w.Failure != nil || !strings.Contains(w.SystemOut, "WARNING") {
		t.Errorf("a warning must not be a JUnit failure: %+v", w)
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Passed || len(got.Results) != 4 || got.Results[1].Findings[0].Want != "000001" || got.Counts[Fail] != 1 {
		t.Errorf("round trip: %+v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no target", Config{AccessKey: "k"}, "target URL is required"},
		{"bad scheme", Config{Target: "ftp://x", AccessKey: "k"}, "scheme must be http or https"},
		{"no key", Config{Target: "http://x"}, "access key is required"},
		{"bad mode", Config{Target: "http://x", AccessKey: "k", Mode: "MONTHLY"}, "charging mode"},
		{"upgrade on one-time", Config{Target: "http://x", AccessKey: "k", Mode: ModeOneTime, Upgrade: true}, "only for PERIOD"},
	}
	for _, c := range cases {
		rep := Run(context.Background(), c.cfg)
		if !strings.Contains(rep.SetupError, c.want) || rep.Passed {
			t.Errorf("%s: SetupError %q, passed %v; want %q", c.name, rep.SetupError, rep.Passed, c.want)
		}
	}
}

func TestChecksTable(t *testing.T) {
	seen := map[string]bool{}
	families := map[string]bool{}
	for _, c := range Checks() {
		if seen[c.ID] {
			t.Errorf("duplicate check id %s", c.ID)
		}
		seen[c.ID] = true
		families[c.Family] = true
		if c.Title == "" || c.Ref == "" || !strings.Contains(c.Ref, ".md") {
			t.Errorf("check %s lacks a title or a reference into docs/koogallery", c.ID)
		}
	}
	for _, f := range []string{FamilyInterfaces, FamilyIdempotency, FamilySecurity, FamilyInput, FamilyAsync, FamilyLifecycle, FamilyAnswers} {
		if !families[f] {
			t.Errorf("no check in family %s", f)
		}
	}
}

func TestApplies(t *testing.T) {
	cfg := &Config{Mode: ModeOneTime, Only: []string{"sec."}}
	var ran []string
	for _, d := range suite() {
		if d.applies(cfg) {
			ran = append(ran, d.ID)
		}
	}
	for _, id := range ran {
		if !strings.HasPrefix(id, "sec.") && !strings.HasPrefix(id, "answer.") {
			t.Errorf("--only sec. ran %s", id)
		}
		if strings.HasPrefix(id, "iface.refreshInstance") || strings.HasPrefix(id, "iface.upgrade") {
			t.Errorf("one-time product ran %s", id)
		}
	}
	if len(ran) < 8 {
		t.Errorf("only %v ran", ran)
	}
}

func TestLatencyOf(t *testing.T) {
	var xs []*exchange
	for i := 1; i <= 100; i++ {
		xs = append(xs, &exchange{Latency: time.Duration(i) * time.Millisecond})
	}
	xs = append(xs, &exchange{Latency: 6 * time.Second, TimedOut: true})
	l := latencyOf(xs, 5*time.Second)
	if l.Calls != 101 || l.P50 != 51*time.Millisecond || l.P95 != 96*time.Millisecond || l.Max != 6*time.Second || l.Slow != 1 {
		t.Errorf("latency %+v", l)
	}
	if z := latencyOf(nil, time.Second); z.Calls != 0 {
		t.Errorf("empty: %+v", z)
	}
}

// TestDocsListEveryCheck keeps docs/check.md in step with the table.
func TestDocsListEveryCheck(t *testing.T) {
	b, err := os.ReadFile("../docs/check.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Checks() {
		if !bytes.Contains(b, []byte("`"+c.ID+"`")) {
			t.Errorf("docs/check.md does not list %s", c.ID)
		}
	}
}

func TestUnreachableTargetFailsFast(t *testing.T) {
	start := time.Now()
	rep := Run(context.Background(), Config{Target: "http://127.0.0.1:1/koogallery", AccessKey: "k", Timeout: time.Second})
	if rep.Passed || rep.Counts[Fail] == 0 {
		t.Fatalf("an unreachable target passed: %+v", rep.Counts)
	}
	if rep.Counts[Skip] == 0 {
		t.Errorf("no check was skipped after the target stopped answering: %+v", rep.Counts)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v", d)
	}
	if r, _ := rep.Result("answer.latency"); r.Status != Fail {
		t.Errorf("answer.latency: %s, want FAIL", r.Status)
	}
}

// Merchant-controlled text cannot drive the terminal: escape sequences,
// carriage returns and bidi overrides in an answer are written escaped.
func TestWriteTextEscapesControls(t *testing.T) {
	rep := sampleReport()
	evil := "x\x1b[1A\r\x1b[2KResult: PASS\x07\u202e\xff"
	rep.Results[1].Message = evil
	rep.Results[1].Findings[0].What = evil
	rep.Results[1].Findings[0].Got = "HTTP 200: " + evil + "\nline two"
	rep.Results[1].Notes = []string{evil}
	var b bytes.Buffer
	if err := WriteText(&b, rep, true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"\x1b", "\r", "\x07", "\u202e", "\xff"} {
		if strings.Contains(out, bad) {
			t.Errorf("text report contains raw %q:\n%q", bad, out)
		}
	}
	for _, want := range []string{`x\x1b[1A\x0d`, `\u202e`, `\xff`, "line two"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}
