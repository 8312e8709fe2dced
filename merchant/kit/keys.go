package kit

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/soukhq/souk/kg"
)

// KeyFile is the name of the merchant's RSA private key inside the data dir.
// KooGallery encrypts each tenant's OAuth clientSecret with the matching
// public key (applicationSync, joint-kit.md §3).
const KeyFile = "kit-rsa-key.pem"

// MinKeyBits is the smallest RSA key KooGallery accepts for the clientSecret.
const MinKeyBits = 3072

// EnsureKeyPair loads the merchant's RSA private key from dataDir/KeyFile,
// generating a 3072-bit key there (PKCS#8 PEM, mode 0600) when the file does
// not exist. An existing file that is readable by group or others, or holds a
// key shorter than 3072 bits, is an error (the key is never silently replaced).
func EnsureKeyPair(dataDir string) (*rsa.PrivateKey, error) {
	if dataDir == "" {
		return nil, errors.New("kit: key pair: data directory is not set")
	}
	path := filepath.Join(dataDir, KeyFile)
	k, err := LoadPrivateKey(path)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("kit: key pair: %w", err)
	}
	k, err = kg.GenerateRSAKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("kit: key pair: %w", err)
	}
	pemBytes, err := kg.MarshalPrivateKeyPEM(k)
	if err != nil {
		return nil, fmt.Errorf("kit: key pair: %w", err)
	}
	// write a temporary file and link it into place: a concurrent first start
	// never sees a half-written key, and the loser of a race loads the winner's.
	tmp, err := os.CreateTemp(dataDir, ".kit-rsa-key-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("kit: key pair: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("kit: key pair: %w", err)
	}
	if _, err := tmp.Write(pemBytes); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("kit: key pair: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("kit: key pair: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("kit: key pair: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadPrivateKey(path)
		}
		return nil, fmt.Errorf("kit: key pair: %w", err)
	}
	return k, nil
}

// LoadPrivateKey reads an RSA private key PEM file, refusing files readable
// by group or others and keys shorter than MinKeyBits. A missing file's error
// wraps fs.ErrNotExist.
func LoadPrivateKey(path string) (*rsa.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("kit: private key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("kit: private key %s has mode %04o; it must not be readable by group or others (chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kit: private key: %w", err)
	}
	k, err := kg.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("kit: private key %s: %w", path, err)
	}
	if k.N.BitLen() < MinKeyBits {
		return nil, fmt.Errorf("kit: private key %s has %d bits; KooGallery requires at least %d", path, k.N.BitLen(), MinKeyBits)
	}
	return k, nil
}

// PublicKeyBase64 returns the public half of priv in the form Seller Center's
// app-credential page asks for: Base64 of the DER SubjectPublicKeyInfo, on one
// line (a PEM body without its BEGIN/END lines).
func PublicKeyBase64(priv *rsa.PrivateKey) (string, error) {
	if priv == nil {
		return "", errors.New("kit: no private key")
	}
	return kg.PublicKeyBase64(&priv.PublicKey)
}

// PrintPublicKey ensures the key pair in dataDir (generating it on first use)
// and writes the public key, as Seller Center asks for it, on one line to w.
// It is `souk merchant public-key --data DIR`.
func PrintPublicKey(w io.Writer, dataDir string) error {
	k, err := EnsureKeyPair(dataDir)
	if err != nil {
		return err
	}
	pub, err := PublicKeyBase64(k)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, pub)
	return err
}

// ParseKeys splits a comma-separated key list (SOUK_KIT_KEY), trimming
// spaces and dropping empty entries. The first key signs responses.
func ParseKeys(s string) []string {
	var out []string
	for _, k := range strings.Split(s, ",") {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}
