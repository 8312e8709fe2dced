package db

import (
	"strings"
	"unicode/utf8"
)

// Text is s as a text column of both backends can hold it: bytes that are
// not UTF-8, and NUL (valid UTF-8, but refused by PostgreSQL), become U+FFFD,
// and the result is cut to at most max bytes on a character boundary (max ≤
// 0: no cut). For text that comes from outside (a request path, a webhook
// error, a merchant's answer) and is stored as it came.
func Text(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	if max <= 0 || len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}
