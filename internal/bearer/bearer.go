// Package bearer checks an "Authorization: Bearer <token>" header against the
// tokens configured: one, or several while a token is rotated (the
// application moves to the new one, then the old one is dropped).
package bearer

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// Match reports whether header (an Authorization value) bears one of tokens.
// Every token is compared, each through its SHA-256, so that the time taken
// tells neither which token matched nor how long they are.
func Match(header string, tokens []string) bool {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return false
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	match := 0
	for _, t := range tokens {
		want := sha256.Sum256([]byte(t))
		match |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return match == 1
}
