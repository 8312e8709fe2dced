// Package testkeys holds fixed keys for tests. They are committed, hence
// public: never use them outside tests.
package testkeys

import (
	"crypto/rsa"
	_ "embed"
	"sync"
	"testing"

	"github.com/soukhq/souk/kg"
)

//go:embed rsa_3072.pem
var rsa3072PEM []byte

var rsa3072 = sync.OnceValues(func() (*rsa.PrivateKey, error) { return kg.ParsePrivateKeyPEM(rsa3072PEM) })

// RSA3072 returns one fixed 3072-bit RSA key, the same on every call
// (generating a key of that size under -race is slow).
func RSA3072(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa3072()
	if err != nil {
		t.Fatalf("testkeys: rsa key: %v", err)
	}
	return k
}
