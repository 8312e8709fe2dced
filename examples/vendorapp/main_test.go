package main

import (
	"strings"
	"testing"
)

func TestRunChecksSettings(t *testing.T) {
	env := func(map[string]string) func(string) string {
		return func(string) string { return "" }
	}
	if err := run(nil, env(nil)); err == nil || !strings.Contains(err.Error(), "-secret") {
		t.Errorf("no secret: %v", err)
	}
	if err := run([]string{"-secret", "s", "-async"}, env(nil)); err == nil || !strings.Contains(err.Error(), "-admin-token") {
		t.Errorf("async without token: %v", err)
	}
}
