package kit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
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
	return parsePrivateKey(data, path)
}

// ParsePrivateKey reads an RSA private key given as PEM (PKCS#8 or PKCS#1),
// refusing keys shorter than MinKeyBits: the --kit-private-key option.
func ParsePrivateKey(pemText string) (*rsa.PrivateKey, error) {
	return parsePrivateKey([]byte(pemText), "(--kit-private-key)")
}

func parsePrivateKey(data []byte, where string) (*rsa.PrivateKey, error) {
	k, err := kg.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("kit: private key %s: %w", where, err)
	}
	if k.N.BitLen() < MinKeyBits {
		return nil, fmt.Errorf("kit: private key %s has %d bits; KooGallery requires at least %d", where, k.N.BitLen(), MinKeyBits)
	}
	return k, nil
}

// Fingerprint identifies a key pair: the SHA-256 of its public key's DER
// SubjectPublicKeyInfo, in hex.
func Fingerprint(priv *rsa.PrivateKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return "", fmt.Errorf("kit: fingerprint: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// KeyMismatchError is BindKey's refusal: the database records another key
// than the one this merchant holds.
type KeyMismatchError struct {
	Have, Recorded string // fingerprints
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("kit: this merchant's RSA key (fingerprint %.16s…) is not the key recorded in its database (%.16s…), "+
		"with which the stored client secrets are encrypted and whose public key Seller Center holds. Give every replica the "+
		"same key (--kit-private-key, SOUK_KIT_PRIVATE_KEY_FILE, or the same %s in --data). To replace the key on purpose, "+
		"run `souk merchant public-key --adopt` with this key, then upload the public key it prints: stored client secrets "+
		"stay unreadable until the next applicationSync", e.Have, e.Recorded, KeyFile)
}

// BindKey records priv as the database's key pair when none is recorded, and
// refuses (*KeyMismatchError) another one: replicas sharing a database must
// share the key, and a lost key file must not be replaced in silence.
func BindKey(ctx context.Context, d *db.DB, now time.Time, priv *rsa.PrivateKey) error {
	fp, err := Fingerprint(priv)
	if err != nil {
		return err
	}
	if _, err := d.Exec(ctx, `INSERT INTO kit_key (id, fingerprint, recorded_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING`,
		fp, now.UnixMilli()); err != nil {
		return fmt.Errorf("kit: record key: %w", err)
	}
	var recorded string
	if err := d.QueryRow(ctx, `SELECT fingerprint FROM kit_key WHERE id = 1`).Scan(&recorded); err != nil {
		return fmt.Errorf("kit: recorded key: %w", err)
	}
	if recorded != fp {
		return &KeyMismatchError{Have: fp, Recorded: recorded}
	}
	return nil
}

// AdoptKey records priv as the database's key pair, replacing the one
// recorded: `souk merchant public-key --adopt`. It returns the fingerprint
// replaced ("" when none was recorded or it was the same).
func AdoptKey(ctx context.Context, d *db.DB, now time.Time, priv *rsa.PrivateKey) (string, error) {
	fp, err := Fingerprint(priv)
	if err != nil {
		return "", err
	}
	var old string
	err = d.Tx(ctx, func(tx *db.Tx) error {
		old = ""
		if err := tx.QueryRow(ctx, `SELECT fingerprint FROM kit_key WHERE id = 1`).Scan(&old); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO kit_key (id, fingerprint, recorded_at) VALUES (1, $1, $2)
			ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, recorded_at = excluded.recorded_at`, fp, now.UnixMilli())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("kit: adopt key: %w", err)
	}
	if old == fp {
		old = ""
	}
	return old, nil
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
