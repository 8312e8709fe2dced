package kg

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
)

// RSAKeyBits is the size of generated client-secret keys (KooGallery requires ≥ 3072).
const RSAKeyBits = 3072

// Client-secret OAEP variants, in the order DecryptClientSecret tries them (README policy 5).
const (
	OAEPSHA256MGF1SHA1 = "oaep-sha256-mgf1-sha1" // Java RSA/ECB/OAEPWithSHA-256AndMGF1Padding default
	OAEPSHA1           = "oaep-sha1"             // Java RSA/ECB/OAEPPadding
	OAEPSHA256         = "oaep-sha256"           // SHA-256 for both hash and MGF1
)

// ErrClientSecret reports a clientSecret that no OAEP variant decrypts.
var ErrClientSecret = errors.New("clientSecret cannot be decrypted")

var oaepVariants = []struct {
	name      string
	hash, mgf crypto.Hash
}{
	{OAEPSHA256MGF1SHA1, crypto.SHA256, crypto.SHA1},
	{OAEPSHA1, crypto.SHA1, crypto.SHA1},
	{OAEPSHA256, crypto.SHA256, crypto.SHA256},
}

// EncryptClientSecret encrypts an OAuth client secret for applicationSync:
// Base64(RSA-OAEP(SHA-256, MGF1-SHA-1)), the first reading of policy 5.
func EncryptClientSecret(pub *rsa.PublicKey, secret string, rand io.Reader) (string, error) {
	if pub == nil {
		return "", errors.New("kg: client secret: no public key")
	}
	ct, err := rsa.EncryptOAEPWithOptions(rand, pub, []byte(secret), &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA1})
	if err != nil {
		return "", fmt.Errorf("kg: client secret: %w", err)
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

// DecryptClientSecret decrypts a Base64 RSA-OAEP clientSecret, trying
// OAEP(SHA-256, MGF1-SHA-1), then (SHA-1, SHA-1), then (SHA-256, SHA-256).
// It returns the secret and the variant that worked. Failures wrap ErrClientSecret.
func DecryptClientSecret(priv *rsa.PrivateKey, b64 string) (secret, variant string, err error) {
	if priv == nil {
		return "", "", fmt.Errorf("kg: no private key: %w", ErrClientSecret)
	}
	ct, err := decodeBase64Lenient(b64)
	if err != nil {
		return "", "", fmt.Errorf("kg: clientSecret is not base64: %w", ErrClientSecret)
	}
	if len(ct) != priv.Size() {
		return "", "", fmt.Errorf("kg: clientSecret is %d bytes, key needs %d: %w", len(ct), priv.Size(), ErrClientSecret)
	}
	for _, v := range oaepVariants {
		pt, err := priv.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: v.hash, MGFHash: v.mgf})
		if err == nil {
			return string(pt), v.name, nil
		}
	}
	return "", "", fmt.Errorf("kg: no OAEP variant matches: %w", ErrClientSecret)
}

// decodeBase64Lenient accepts standard or URL-safe Base64, padded or not,
// with embedded whitespace.
func decodeBase64Lenient(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	if s == "" {
		return nil, errors.New("empty")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// GenerateRSAKey generates a 3072-bit RSA key for the client-secret exchange.
func GenerateRSAKey(rand io.Reader) (*rsa.PrivateKey, error) {
	k, err := rsa.GenerateKey(rand, RSAKeyBits)
	if err != nil {
		return nil, fmt.Errorf("kg: generate RSA key: %w", err)
	}
	return k, nil
}

// MarshalPrivateKeyPEM encodes priv as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(priv *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("kg: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM parses an RSA private key from a PKCS#8 "PRIVATE KEY" or
// PKCS#1 "RSA PRIVATE KEY" PEM block.
func ParsePrivateKeyPEM(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("kg: private key: no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("kg: private key: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("kg: private key is %T, not RSA", k)
		}
		return rk, nil
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("kg: private key: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("kg: private key: unexpected PEM type %q", block.Type)
}

// PublicKeyBase64 returns the public key as KooGallery's app-credential page
// wants it: Base64 of the DER SubjectPublicKeyInfo (a PEM body without its
// BEGIN/END lines), on one line.
func PublicKeyBase64(pub *rsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("kg: marshal public key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// ParsePublicKey parses an RSA public key given as Base64 DER
// SubjectPublicKeyInfo (whitespace allowed) or as a "PUBLIC KEY" PEM block.
func ParsePublicKey(s string) (*rsa.PublicKey, error) {
	var der []byte
	if block, _ := pem.Decode([]byte(s)); block != nil {
		der = block.Bytes
	} else {
		b, err := decodeBase64Lenient(s)
		if err != nil {
			return nil, fmt.Errorf("kg: public key is neither PEM nor base64: %w", err)
		}
		der = b
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("kg: public key: %w", err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("kg: public key is %T, not RSA", k)
	}
	return rk, nil
}
