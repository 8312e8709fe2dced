// Package sqltext rewrites SQL text: PostgreSQL-style $n placeholders to
// SQLite's ?n. It has no dependencies so that its fuzz target builds fast.
package sqltext

import "strings"

// Rebind rewrites $1..$n placeholders to ?1..?n (SQLite numbered parameters). Text inside
// single-quoted strings, double-quoted identifiers and comments is left alone,
// so a literal '$5' stays a literal.
func Rebind(query string) string {
	return rewrite(query, func(b *strings.Builder, digits string) {
		b.WriteByte('?')
		b.WriteString(digits)
	})
}

// RebindPositional is Rebind, except that a query whose placeholders are
// $1, $2, …, $n in this order, each once (a multi-row INSERT, say), gets
// plain ? placeholders: SQLite binds those by position, whereas every ?NNN
// makes the binding of each parameter look its name up in a list, a cost
// quadratic in the number of parameters.
func RebindPositional(query string) string {
	next, seq := 1, true
	rewrite(query, func(_ *strings.Builder, digits string) {
		if seq && digits != itoa(next) {
			seq = false
		}
		next++
	})
	if !seq {
		return Rebind(query)
	}
	return rewrite(query, func(b *strings.Builder, _ string) { b.WriteByte('?') })
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	var buf [20]byte
	i := len(buf)
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return string(buf[i:])
}

// rewrite copies query, calling emit for every $<digits> placeholder
// outside strings, quoted identifiers and comments.
func rewrite(query string, emit func(b *strings.Builder, digits string)) string {
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
			emit(&b, query[i+1:j])
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
