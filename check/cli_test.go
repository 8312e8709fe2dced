package check_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/check"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestCLIAgainstSoukMerchant is what CI does: build the souk binary, start
// `souk merchant` (SQLite, a vendor webhook that completes every instance),
// run `souk check` against it and expect exit status 0 and both reports; then
// run it with a wrong key and expect exit status 1.
func TestCLIAgainstSoukMerchant(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the souk binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "souk")
	build := exec.Command("go", "build", "-o", bin, "github.com/soukhq/souk/cmd/souk")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// The vendor application: completes every instance with appInfo.
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			Subject string `json:"subject"`
		}
		_ = json.NewDecoder(r.Body).Decode(&ev)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"appInfo":{"frontEndUrl":"https://app.example.com/%s","userName":"admin","password":"Init-Passw0rd","memo":"\u6b22\u8fce"},"usageInfo":[{"usageValue":1.5,"statisticalTime":"%s000"}]}`,
			ev.Subject, time.Now().UTC().Format("20060102150405"))
	}))
	defer vendor.Close()

	const key = "cli-access-key-0001"
	merchantAddr, marketAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var merchantLog bytes.Buffer
	mc := exec.CommandContext(ctx, bin, "merchant", "--listen", merchantAddr, "--data", filepath.Join(dir, "data"), "--log-level", "warn")
	mc.Env = append(os.Environ(),
		"SOUK_ACCESS_KEY="+key,
		"SOUK_MARKET_URL=http://"+marketAddr,
		"SOUK_MARKET_AK=cli-market-ak",
		"SOUK_MARKET_SK=cli-market-sk",
		"SOUK_WEBHOOK_URL="+vendor.URL,
		"SOUK_WEBHOOK_SECRET=cli-webhook-secret",
	)
	mc.Stdout, mc.Stderr = &merchantLog, &merchantLog
	if err := mc.Start(); err != nil {
		t.Fatalf("start souk merchant: %v", err)
	}
	defer func() {
		_ = mc.Process.Signal(os.Interrupt)
		_ = mc.Wait()
		if t.Failed() {
			t.Logf("souk merchant output:\n%s", merchantLog.String())
		}
	}()
	waitHealthy(t, "http://"+merchantAddr+"/healthz")

	junit, jsonPath := filepath.Join(dir, "report.xml"), filepath.Join(dir, "report.json")
	runCheck := func(key string, extra ...string) (int, string) {
		args := append([]string{"check", "--target", "http://" + merchantAddr + "/koogallery", "--market-listen", marketAddr,
			"--market-ak", "cli-market-ak", "--poll-interval", "200ms", "--async-timeout", "30s"}, extra...)
		c := exec.CommandContext(ctx, bin, args...)
		c.Env = append(os.Environ(), "SOUK_ACCESS_KEY="+key, "SOUK_MARKET_SK=cli-market-sk")
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		err := c.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, out.String()
		case errors.As(err, &ee):
			return ee.ExitCode(), out.String()
		}
		t.Fatalf("souk check: %v\n%s", err, out.String())
		return -1, ""
	}

	code, out := runCheck(key, "--upgrade", "--change-check", "--order-notify", "--junit", junit, "--json", jsonPath)
	if code != 0 {
		t.Fatalf("souk check exited %d, want 0:\n%s", code, out)
	}
	for _, want := range []string{"SOUK_MARKET_URL=http://" + marketAddr, "PASS", "iface.newInstance", "Result: PASS"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var rep check.Report
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if !rep.Passed || len(rep.Results) < 40 {
		t.Errorf("JSON report: passed=%v with %d results", rep.Passed, len(rep.Results))
	}
	xb, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal(xb, &suites); err != nil {
		t.Fatalf("JUnit report: %v", err)
	}
	if suites.Tests != len(rep.Results) || suites.Failures != 0 {
		t.Errorf("JUnit report: %d tests, %d failures; want %d, 0", suites.Tests, suites.Failures, len(rep.Results))
	}

	code, out = runCheck("not-the-merchant-key", "--only", "iface.newInstance")
	if code != 1 {
		t.Errorf("with a wrong key souk check exited %d, want 1:\n%s", code, out)
	}
	if !strings.Contains(out, "got resultCode 000001") {
		t.Errorf("the failure does not show the answer:\n%s", out)
	}
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not become healthy", url)
}
