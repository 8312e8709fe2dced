package merchant

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/soukhq/souk/kg"
)

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies(" 10.0.0.0/8, 192.168.1.7 ,, fd00::/8, ::ffff:172.16.0.1 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("172.16.0.1/32")}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if _, err := ParseTrustedProxies("10.0.0.0/8,lb.example.com"); err == nil || !strings.Contains(err.Error(), "lb.example.com") {
		t.Errorf("a host name: %v", err)
	}
	if p, err := ParseTrustedProxies(""); err != nil || p != nil {
		t.Errorf("empty: %v %v", p, err)
	}
}

func TestClientIP(t *testing.T) {
	lb, _ := ParseTrustedProxies("10.0.0.0/8,fd00::/8")
	for _, tc := range []struct {
		name      string
		remote    string
		forwarded []string
		trusted   []netip.Prefix
		want      string
	}{
		{"direct", "203.0.113.7:5555", nil, lb, "203.0.113.7"},
		{"no proxies configured: header ignored", "10.0.0.2:5555", []string{"198.51.100.1"}, nil, "10.0.0.2"},
		{"untrusted peer: header ignored (spoofed)", "203.0.113.7:5555", []string{"198.51.100.1"}, lb, "203.0.113.7"},
		{"one proxy", "10.0.0.2:5555", []string{"198.51.100.1"}, lb, "198.51.100.1"},
		{"two proxies", "10.0.0.2:5555", []string{"198.51.100.1, 10.0.0.9"}, lb, "198.51.100.1"},
		{"spoofed entry left of the client", "10.0.0.2:5555", []string{"1.1.1.1, 198.51.100.1"}, lb, "198.51.100.1"},
		{"several headers", "10.0.0.2:5555", []string{"1.1.1.1", "198.51.100.1, 10.0.0.9"}, lb, "198.51.100.1"},
		{"entry with a port", "10.0.0.2:5555", []string{"198.51.100.1:4711"}, lb, "198.51.100.1"},
		{"IPv6", "[fd00::1]:443", []string{"2001:db8::5"}, lb, "2001:db8::5"},
		{"IPv4-mapped peer", "[::ffff:10.0.0.2]:5555", []string{"198.51.100.1"}, lb, "198.51.100.1"},
		{"garbage stops at the last good hop", "10.0.0.2:5555", []string{"198.51.100.1, not-an-ip, 10.0.0.9"}, lb, "10.0.0.9"},
		{"only proxies", "10.0.0.2:5555", []string{"10.0.0.3, 10.0.0.9"}, lb, "10.0.0.3"},
		{"empty header", "10.0.0.2:5555", []string{""}, lb, "10.0.0.2"},
		{"peer without port", "10.0.0.2", []string{"198.51.100.1"}, lb, "198.51.100.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := clientIP(tc.remote, tc.forwarded, tc.trusted); got != tc.want {
				t.Errorf("clientIP(%q, %q) = %q, want %q", tc.remote, tc.forwarded, got, tc.want)
			}
		})
	}
}

// The audit log records the client behind a trusted proxy, and the peer
// when the header comes from anyone else.
func TestAuditBehindProxy(t *testing.T) {
	for _, tc := range []struct {
		name, trusted, want string
	}{
		{"trusted", "127.0.0.1", "203.0.113.7"},
		{"untrusted", "", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxies, err := ParseTrustedProxies(tc.trusted)
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, "sqlite", func(c *Config, _ *Deps) { c.TrustedProxies = proxies })
			h := http.Header{"X-Forwarded-For": {"203.0.113.7"}}
			if r := e.call(kg.QueryInstanceRequest{Activity: kg.ActivityQueryInstance, InstanceID: "nope"}, func(o *callOpt) { o.header = h }); r.ResultCode != kg.CodeNoInstance {
				t.Fatalf("queryInstance: %+v", r)
			}
			if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE activity = 'queryInstance' AND remote = '` + tc.want + `'`); n != 1 {
				t.Errorf("audit rows with remote %s: %d", tc.want, n)
			}
		})
	}
}
