package bearer

import (
	"slices"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	rotating := []string{"new-token", "old-token"}
	for _, tc := range []struct {
		name, header string
		tokens       []string
		want         bool
	}{
		{"the token", "Bearer new-token", rotating, true},
		{"the old token while rotating", "Bearer old-token", rotating, true},
		{"spaces around", "Bearer  new-token ", rotating, true},
		{"another token", "Bearer other", rotating, false},
		{"a prefix of a token", "Bearer new", rotating, false},
		{"both tokens at once", "Bearer new-token,old-token", rotating, false},
		{"no scheme", "new-token", rotating, false},
		{"basic scheme", "Basic new-token", rotating, false},
		{"lower-case scheme", "bearer new-token", rotating, false},
		{"empty token", "Bearer ", rotating, false},
		{"empty header", "", rotating, false},
		{"no token configured", "Bearer x", nil, false},
		{"empty token configured", "Bearer ", []string{""}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Match(tc.header, tc.tokens); got != tc.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tc.header, tc.tokens, got, tc.want)
			}
		})
	}
}

// FuzzMatch: Match never panics, accepts every configured token and nothing
// that is not one.
func FuzzMatch(f *testing.F) {
	f.Add("Bearer a", "a,b")
	f.Add("Bearer b ", "a, b")
	f.Add("Bearer ", ",")
	f.Add("Basic a", "a")
	f.Add("Bearer a,b", "a,b")
	f.Fuzz(func(t *testing.T, header, configured string) {
		// The configured list as the merchant splits it (SplitKeys).
		var tokens []string
		for _, tk := range strings.Split(configured, ",") {
			if tk = strings.TrimSpace(tk); tk != "" {
				tokens = append(tokens, tk)
			}
		}
		got := Match(header, tokens)
		tok, ok := strings.CutPrefix(header, "Bearer ")
		want := ok && slices.Contains(tokens, strings.TrimSpace(tok))
		if got != want {
			t.Fatalf("Match(%q, %q) = %v, want %v", header, tokens, got, want)
		}
		for _, tk := range tokens {
			if !Match("Bearer "+tk, tokens) {
				t.Fatalf("configured token %q refused", tk)
			}
		}
	})
}
