// Package redact hides the credentials a URL may carry (user info, and query
// parameters named like secrets) before it is printed, logged or stored.
package redact

import (
	"net/url"
	"strings"
)

// Mask replaces each hidden value.
const Mask = "xxxxx"

// URL returns raw with its password and its secret-looking query parameters
// (named like password, secret, token, key, signature, sig, auth) masked. A
// string that does not parse as a URL is returned as "<invalid URL>": it may
// hold a credential in a place no rule can find.
func URL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Mask)
		}
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = Mask
		} else {
			changed := false
			for k := range q {
				if SecretName(k) {
					q[k] = []string{Mask}
					changed = true
				}
			}
			if changed {
				u.RawQuery = q.Encode()
			}
		}
	}
	return u.String()
}

// SecretName reports whether a parameter name looks like it holds a secret.
func SecretName(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"password", "passwd", "secret", "token", "key", "signature", "sig", "auth", "credential"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}
