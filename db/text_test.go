package db

import (
	"testing"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 0, "plain"},
		{"a\x00b", 0, "a\uFFFDb"},
		{"gbk \xb7\xfe", 0, "gbk \uFFFD"},
		{"测试", 4, "测"}, // 3-byte characters: cut on a boundary
		{"测试", 6, "测试"},
		{"ab\x00", 2, "ab"},
	} {
		got := Text(c.in, c.max)
		if got != c.want || !utf8.ValidString(got) {
			t.Errorf("Text(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
	}
}
