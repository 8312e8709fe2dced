// Package sqltext rewrites SQL text: PostgreSQL-style $n placeholders to
// SQLite's ?n. It has no dependencies so that its fuzz target builds fast.
package sqltext

import "strings"

// Rebind rewrites $1..$n placeholders to ?1..?n (SQLite numbered parameters). Text inside
// single-quoted strings, double-quoted identifiers and comments is left alone,
// so a literal '$5' stays a literal.
func Rebind(query string) string {
	if !strings.Contains(query, "$") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query))
	n := len(query)
	for i := 0; i < n; {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < n {
				if query[j] == c {
					if j+1 < n && query[j+1] == c { // doubled quote escapes itself
						j += 2
						continue
					}
					j++
					break
				}
				j++
			}
			if j > n {
				j = n
			}
			b.WriteString(query[i:j])
			i = j
		case c == '-' && i+1 < n && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = n
			} else {
				j += i + 1
			}
			b.WriteString(query[i:j])
			i = j
		case c == '/' && i+1 < n && query[i+1] == '*':
			j := strings.Index(query[i+2:], "*/")
			if j < 0 {
				j = n
			} else {
				j += i + 4
			}
			b.WriteString(query[i:j])
			i = j
		case c == '$' && i+1 < n && query[i+1] >= '0' && query[i+1] <= '9' && (i == 0 || !isIdentChar(query[i-1])):
			j := i + 1
			for j < n && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			b.WriteByte('?')
			b.WriteString(query[i+1 : j])
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// isIdentChar reports whether c can continue an identifier (PostgreSQL allows
// '$' inside identifiers, as in a$1, which is not a placeholder).
func isIdentChar(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80
}
