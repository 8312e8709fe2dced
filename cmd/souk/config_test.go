package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSettingsPrecedenceAndMasking(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "key")
	if err := os.WriteFile(secretFile, []byte("s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"SOUK_LISTEN":          ":9000",
		"SOUK_ACCESS_KEY_FILE": secretFile,
		"SOUK_WORKERS":         "8",
		"SOUK_HOOK":            "http://hookuser:hookpass@127.0.0.1:9000/hook?token=tok3n",
	}
	a := &App{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: func(k string) string { return env[k] }}
	s := a.NewSettings("test")
	var listen, key, data, hook string
	var workers int
	var timeout time.Duration
	var tls bool
	s.String(&listen, "listen", ":8080", "address")
	s.String(&data, "data", "./data", "dir")
	s.Secret(&key, "access-key", "key")
	s.Int(&workers, "workers", 4, "n")
	s.Duration(&timeout, "timeout", 5*time.Second, "t")
	s.Bool(&tls, "tls", false, "tls")
	s.URL(&hook, "hook", "", "url")
	if err := s.Parse([]string{"--data", "/var/souk", "--tls"}); err != nil {
		t.Fatal(err)
	}
	if listen != ":9000" || key != "s3cret-from-file" || data != "/var/souk" || workers != 8 || timeout != 5*time.Second || !tls {
		t.Fatalf("got listen=%q key=%q data=%q workers=%d timeout=%v tls=%v", listen, key, data, workers, timeout, tls)
	}
	var out bytes.Buffer
	s.Print(&out)
	if hook != env["SOUK_HOOK"] {
		t.Fatalf("hook = %q", hook)
	}
	if strings.Contains(out.String(), "s3cret") || strings.Contains(out.String(), "hookpass") || strings.Contains(out.String(), "tok3n") {
		t.Fatalf("secret printed:\n%s", out.String())
	}
	for _, want := range []string{"flag --data", "env SOUK_LISTEN", "file SOUK_ACCESS_KEY_FILE", "default", "http://hookuser:xxxxx@127.0.0.1:9000/hook?token=xxxxx"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("Print lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSettingsRejects(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "key")
	if err := os.WriteFile(open, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string]map[string]string{
		"world-readable secret file": {"SOUK_ACCESS_KEY_FILE": open},
		"bad integer":                {"SOUK_WORKERS": "many"},
	} {
		t.Run(name, func(t *testing.T) {
			a := &App{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: func(k string) string { return env[k] }}
			s := a.NewSettings("test")
			var key string
			var n int
			s.Secret(&key, "access-key", "key")
			s.Int(&n, "workers", 1, "n")
			if err := s.Parse(nil); err == nil {
				t.Fatal("Parse accepted bad configuration")
			}
		})
	}
}

func TestRunUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"nope"}, &out, &errb, func(string) string { return "" }); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("stderr: %s", errb.String())
	}
	if code := run([]string{"version"}, &out, &errb, func(string) string { return "" }); code != 0 || !strings.Contains(out.String(), "souk") {
		t.Fatalf("version: %d %q", code, out.String())
	}
}

func TestLoggerAnnounceIgnoresTheLevel(t *testing.T) {
	for _, tc := range []struct {
		level, format      string
		info, announceSeen bool
	}{
		{"debug", "text", true, true},
		{"info", "json", true, true},
		{"warn", "text", false, true},
		{"ERROR", "json", false, true},
	} {
		a, _, errb := testApp(nil)
		log, err := a.Logger(tc.level, tc.format)
		if err != nil {
			t.Fatal(err)
		}
		log = log.With("component", "x") // a derived logger keeps the rule
		log.Info("an info record")
		log.Debug("a debug record")
		announce(context.Background(), log, "the listening line", "addr", "127.0.0.1:1")
		log.Warn("a warning")
		s := errb.String()
		if got := strings.Contains(s, "an info record"); got != tc.info {
			t.Errorf("%s: info record written %v, want %v:\n%s", tc.level, got, tc.info, s)
		}
		if strings.Contains(s, "a debug record") != (tc.level == "debug") {
			t.Errorf("%s: debug record:\n%s", tc.level, s)
		}
		if !strings.Contains(s, "the listening line") || !strings.Contains(s, "127.0.0.1:1") || !strings.Contains(s, "component") {
			t.Errorf("%s: announce not written whole:\n%s", tc.level, s)
		}
		if strings.Contains(s, "a warning") != (tc.level != "ERROR") {
			t.Errorf("%s: warning:\n%s", tc.level, s)
		}
	}
}
