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
	for _, bad := range []string{"basic", "=000106", "basic=106", "basic=00010x"} {
		if err := run([]string{"-secret", "s", "-refuse-sku", bad}, env(nil)); err == nil || !strings.Contains(err.Error(), "SKU=CODE") {
			t.Errorf("-refuse-sku %s: %v", bad, err)
		}
	}
	refuseEnv := func(k string) string {
		if k == "VENDOR_REFUSE_SKU" {
			return "basic=000106,nope"
		}
		return ""
	}
	if err := run([]string{"-secret", "s"}, refuseEnv); err == nil || !strings.Contains(err.Error(), "VENDOR_REFUSE_SKU") {
		t.Errorf("bad VENDOR_REFUSE_SKU: %v", err)
	}
}
