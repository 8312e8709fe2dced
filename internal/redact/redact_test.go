package redact

import (
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"https://app.example.com/souk/events", "https://app.example.com/souk/events"},
		{"http://hookuser:hookpass@127.0.0.1:9000/hook", "http://hookuser:xxxxx@127.0.0.1:9000/hook"},
		{"http://onlyuser@h/x", "http://onlyuser@h/x"},
		{"https://h/x?token=abc&page=2", "https://h/x?page=2&token=xxxxx"},
		{"https://h/x?api_key=abc&X-Signature=s", "https://h/x?X-Signature=xxxxx&api_key=xxxxx"},
		{"https://h/x?a=%zz", "https://h/x?xxxxx"},
		{"http://u:p%zz@h/", "<invalid URL>"},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(URL(tc.in), "hookpass") || strings.Contains(URL(tc.in), "abc") {
			t.Errorf("URL(%q) leaks a secret", tc.in)
		}
	}
}

func FuzzURL(f *testing.F) {
	for _, s := range []string{"http://u:secretpw@h/p?token=secretpw", "https://h/x?a=1", "::", "http://[::1]:80/?key=secretpw#frag"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out := URL(raw)
		// Whatever the input, a password given in user info is never
		// printed as it was.
		if i := strings.Index(raw, "://"); i >= 0 {
			rest := raw[i+3:]
			if at := strings.LastIndex(rest, "@"); at > 0 {
				if _, pw, ok := strings.Cut(rest[:at], ":"); ok && len(pw) >= 6 && !strings.ContainsAny(pw, "/?#%@[]") && strings.Contains(out, ":"+pw+"@") {
					t.Fatalf("URL(%q) = %q keeps the password", raw, out)
				}
			}
		}
	})
}
