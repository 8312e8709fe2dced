package main

import (
	"bytes"
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
