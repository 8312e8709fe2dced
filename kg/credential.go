package kg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// Credential encryption types (saas-v2.md §6): the top-level encryptType of a
// response that carries encrypted userName/password.
const (
	EncryptAES256 = "1" // AES-256-CBC-PKCS5Padding (the documented default)
	EncryptAES128 = "2" // AES-128-CBC-PKCS5Padding
)

// CredentialMaxLen is the documented limit of an encrypted userName or
// password, IV included. A plaintext of at most CredentialMaxPlaintext bytes
// always fits.
const (
	CredentialMaxLen       = 128
	CredentialMaxPlaintext = 79
	credentialIVLen        = 16
)

// Errors of the credential codec (wrapped; test with errors.Is).
var (
	ErrCredentialTooLong = errors.New("encrypted credential exceeds 128 characters")
	ErrCredentialInvalid = errors.New("invalid encrypted credential")
)

// SHA1PRNGKey derives the AES key Huawei's Java sample obtains from
// KeyGenerator.getInstance("AES").init(bits, SecureRandom("SHA1PRNG") seeded
// with the accessKey's UTF-8 bytes). bits is 128 or 256. The state update
// copies Java's signed-byte arithmetic exactly (saas-v2.md §6).
func SHA1PRNGKey(accessKey string, bits int) ([]byte, error) {
	if bits != 128 && bits != 256 {
		return nil, fmt.Errorf("kg: SHA1PRNG key size %d: must be 128 or 256", bits)
	}
	n := bits / 8
	st := sha1.Sum([]byte(accessKey))
	state := st[:]
	out := make([]byte, 0, 40)
	for len(out) < n {
		block := sha1.Sum(state)
		out = append(out, block[:]...)
		updateSHA1PRNGState(state, block[:])
	}
	return out[:n], nil
}

// updateSHA1PRNGState is OpenJDK's sun.security.provider.SecureRandom.updateState.
func updateSHA1PRNGState(state, output []byte) {
	last := int32(1)
	changed := false
	for i := range state {
		v := int32(int8(state[i])) + int32(int8(output[i])) + last
		t := byte(v)
		if state[i] != t {
			changed = true
		}
		state[i] = t
		last = v >> 8
	}
	if !changed {
		state[0]++
	}
}

func credentialKey(accessKey, encryptType string) ([]byte, error) {
	switch encryptType {
	case EncryptAES256:
		return SHA1PRNGKey(accessKey, 256)
	case EncryptAES128:
		return SHA1PRNGKey(accessKey, 128)
	}
	return nil, &FieldError{Field: "encryptType", Reason: fmt.Sprintf("%q is not \"1\" (AES-256) or \"2\" (AES-128)", clip(encryptType))}
}

const ivAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomIV draws 16 characters from [A-Za-z0-9] without modulo bias.
func randomIV(rand io.Reader) (string, error) {
	iv := make([]byte, 0, credentialIVLen)
	var buf [32]byte
	for len(iv) < credentialIVLen {
		if _, err := io.ReadFull(rand, buf[:]); err != nil {
			return "", fmt.Errorf("kg: credential IV: %w", err)
		}
		for _, b := range buf {
			if b >= 248 { // 248 = 4*62: reject to stay uniform
				continue
			}
			iv = append(iv, ivAlphabet[int(b)%len(ivAlphabet)])
			if len(iv) == credentialIVLen {
				break
			}
		}
	}
	return string(iv), nil
}

// EncryptCredential encrypts a userName or password for appInfo: a random
// 16-character [A-Za-z0-9] IV followed by base64(AES-CBC-PKCS5(key, plaintext)),
// with the SHA1PRNG-derived key of accessKey. encryptType is "1" (AES-256) or
// "2" (AES-128). A result longer than 128 characters is refused with
// ErrCredentialTooLong.
func EncryptCredential(accessKey, encryptType, plaintext string, rand io.Reader) (string, error) {
	iv, err := randomIV(rand)
	if err != nil {
		return "", err
	}
	return EncryptCredentialIV(accessKey, encryptType, iv, plaintext)
}

// EncryptCredentialIV is EncryptCredential with a given IV (16 characters of
// [A-Za-z0-9]); for tests and reproducible vectors.
func EncryptCredentialIV(accessKey, encryptType, iv, plaintext string) (string, error) {
	if err := checkIV(iv); err != nil {
		return "", err
	}
	key, err := credentialKey(accessKey, encryptType)
	if err != nil {
		return "", err
	}
	if n := credentialIVLen + base64.StdEncoding.EncodedLen((len(plaintext)/aes.BlockSize+1)*aes.BlockSize); n > CredentialMaxLen {
		return "", fmt.Errorf("kg: %d-byte plaintext encrypts to %d characters: %w", len(plaintext), n, ErrCredentialTooLong)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", fmt.Errorf("kg: credential cipher: %w", err)
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	buf := make([]byte, len(plaintext)+pad)
	copy(buf, plaintext)
	for i := len(plaintext); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, []byte(iv)).CryptBlocks(buf, buf)
	return iv + base64.StdEncoding.EncodeToString(buf), nil
}

func checkIV(iv string) error {
	if len(iv) != credentialIVLen {
		return fmt.Errorf("kg: credential IV must be %d characters, got %d: %w", credentialIVLen, len(iv), ErrCredentialInvalid)
	}
	for i := 0; i < len(iv); i++ {
		c := iv[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return fmt.Errorf("kg: credential IV must be [A-Za-z0-9]: %w", ErrCredentialInvalid)
		}
	}
	return nil
}

// DecryptCredential reverses EncryptCredential. It enforces the 128-character
// limit (ErrCredentialTooLong), as KooGallery does, and reports malformed
// values with ErrCredentialInvalid; a bad encryptType is a *FieldError.
func DecryptCredential(accessKey, encryptType, value string) (string, error) {
	key, err := credentialKey(accessKey, encryptType)
	if err != nil {
		return "", err
	}
	if len(value) > CredentialMaxLen {
		return "", fmt.Errorf("kg: credential is %d characters: %w", len(value), ErrCredentialTooLong)
	}
	if len(value) < credentialIVLen+24 {
		return "", fmt.Errorf("kg: credential is too short: %w", ErrCredentialInvalid)
	}
	iv := value[:credentialIVLen]
	if err := checkIV(iv); err != nil {
		return "", err
	}
	ct, err := base64.StdEncoding.DecodeString(value[credentialIVLen:])
	if err != nil {
		return "", fmt.Errorf("kg: credential ciphertext is not base64: %w", ErrCredentialInvalid)
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return "", fmt.Errorf("kg: credential ciphertext is not whole AES blocks: %w", ErrCredentialInvalid)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", fmt.Errorf("kg: credential cipher: %w", err)
	}
	cipher.NewCBCDecrypter(block, []byte(iv)).CryptBlocks(ct, ct)
	pad := int(ct[len(ct)-1])
	if pad < 1 || pad > aes.BlockSize {
		return "", fmt.Errorf("kg: credential padding (wrong key?): %w", ErrCredentialInvalid)
	}
	for _, b := range ct[len(ct)-pad:] {
		if int(b) != pad {
			return "", fmt.Errorf("kg: credential padding (wrong key?): %w", ErrCredentialInvalid)
		}
	}
	return string(ct[:len(ct)-pad]), nil
}
