package merchant

import (
	"strings"
	"testing"
)

// The memo must fit in 1024 characters as sent, non-ASCII escaped.
func TestMemoLengthAsSent(t *testing.T) {
	for _, c := range []struct {
		memo string
		ok   bool
	}{
		{strings.Repeat("m", 1024), true},
		{strings.Repeat("m", 1025), false},
		{strings.Repeat("说", 170), true},           // 1020 as sent
		{strings.Repeat("说", 171), false},          // 1026
		{strings.Repeat("😀", 85) + "abcd", true},   // 85 surrogate pairs: 1020 + 4
		{strings.Repeat("😀", 85) + "abcde", false}, // 1025
		{strings.Repeat("m", 1022) + `"`, true},    // 1024: a quote is sent as \"
		{strings.Repeat("m", 1023) + `"`, false},   // 1025
	} {
		err := (&AppInfo{FrontEndURL: "https://x.example.com", Memo: c.memo}).Validate("appInfo.")
		if (err == nil) != c.ok {
			t.Errorf("memo of %d runes (%d as sent): %v, want ok=%v", len([]rune(c.memo)), sentLen(c.memo), err, c.ok)
		}
	}
}
