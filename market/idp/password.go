package idp

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are the argon2id cost parameters of new password hashes.
// Every hash records its own parameters (PHC string format), so raising them
// later keeps old hashes verifiable.
type PasswordParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32
	KeyLen  uint32
}

// DefaultPasswordParams follow RFC 9106's second recommended option
// (64 MiB, 3 passes) with 4 lanes.
var DefaultPasswordParams = PasswordParams{Memory: 64 * 1024, Time: 3, Threads: 4, SaltLen: 16, KeyLen: 32}

// Limits on parameters accepted from a stored hash, so that a corrupted or
// hostile hash string cannot make verification allocate without bound.
const (
	maxArgonMemory  = 1 << 20 // KiB (1 GiB)
	maxArgonTime    = 64
	maxArgonKeyLen  = 128
	maxArgonSaltLen = 128
	maxPasswordLen  = 1024
)

// ErrPasswordMismatch is returned by VerifyPassword for a wrong password.
var ErrPasswordMismatch = errors.New("idp: password does not match")

// HashPassword returns an argon2id hash of password in PHC string format:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt b64>$<key b64>.
func HashPassword(password string, p PasswordParams) (string, error) {
	if password == "" {
		return "", errors.New("idp: empty password")
	}
	if len(password) > maxPasswordLen {
		return "", fmt.Errorf("idp: password longer than %d bytes", maxPasswordLen)
	}
	if p.Memory == 0 || p.Time == 0 || p.Threads == 0 || p.SaltLen < 8 || p.KeyLen < 16 {
		return "", fmt.Errorf("idp: weak argon2id parameters %+v", p)
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("idp: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// parsedHash is a decoded PHC argon2id string.
type parsedHash struct {
	params PasswordParams
	salt   []byte
	key    []byte
}

// parsePasswordHash decodes a PHC argon2id string, bounding every parameter.
func parsePasswordHash(h string) (parsedHash, error) {
	parts := strings.Split(h, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[0] != "" {
		return parsedHash{}, errors.New("idp: password hash: not a PHC string")
	}
	if parts[1] != "argon2id" {
		return parsedHash{}, fmt.Errorf("idp: password hash: algorithm %q is not argon2id", parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return parsedHash{}, fmt.Errorf("idp: password hash: unsupported version %q", parts[2])
	}
	var out parsedHash
	seen := map[string]bool{}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || seen[k] {
			return parsedHash{}, fmt.Errorf("idp: password hash: bad parameter %q", kv)
		}
		seen[k] = true
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return parsedHash{}, fmt.Errorf("idp: password hash: parameter %q: %w", k, err)
		}
		switch k {
		case "m":
			out.params.Memory = uint32(n)
		case "t":
			out.params.Time = uint32(n)
		case "p":
			if n > 255 {
				return parsedHash{}, errors.New("idp: password hash: too many lanes")
			}
			out.params.Threads = uint8(n)
		default:
			return parsedHash{}, fmt.Errorf("idp: password hash: unknown parameter %q", k)
		}
	}
	if out.params.Memory == 0 || out.params.Time == 0 || out.params.Threads == 0 {
		return parsedHash{}, errors.New("idp: password hash: missing parameter")
	}
	if out.params.Memory > maxArgonMemory || out.params.Time > maxArgonTime || out.params.Memory < 8*uint32(out.params.Threads) {
		return parsedHash{}, errors.New("idp: password hash: parameters out of range")
	}
	var err error
	if out.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil || len(out.salt) < 8 || len(out.salt) > maxArgonSaltLen {
		return parsedHash{}, errors.New("idp: password hash: bad salt")
	}
	if out.key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5]); err != nil || len(out.key) < 16 || len(out.key) > maxArgonKeyLen {
		return parsedHash{}, errors.New("idp: password hash: bad key")
	}
	out.params.SaltLen = uint32(len(out.salt))
	out.params.KeyLen = uint32(len(out.key))
	return out, nil
}

// VerifyPassword checks password against a hash made by HashPassword, in
// constant time. It returns ErrPasswordMismatch for a wrong password and
// another error for an unusable hash.
func VerifyPassword(hash, password string) error {
	ph, err := parsePasswordHash(hash)
	if err != nil {
		return err
	}
	if len(password) > maxPasswordLen {
		return ErrPasswordMismatch
	}
	key := argon2.IDKey([]byte(password), ph.salt, ph.params.Time, ph.params.Memory, ph.params.Threads, ph.params.KeyLen)
	if subtle.ConstantTimeCompare(key, ph.key) != 1 {
		return ErrPasswordMismatch
	}
	return nil
}

// NeedsRehash reports whether hash was made with parameters weaker than p.
func NeedsRehash(hash string, p PasswordParams) bool {
	ph, err := parsePasswordHash(hash)
	if err != nil {
		return true
	}
	return ph.params.Memory < p.Memory || ph.params.Time < p.Time || ph.params.KeyLen < p.KeyLen
}
