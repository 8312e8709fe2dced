package market

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Error is a market API error: an HTTP status, a stable code, and when the
// input was at fault the name of the field.
type Error struct {
	Status int    `json:"-"`
	Code   string `json:"code"` // bad_request | not_found | conflict | refused | unauthorized
	Field  string `json:"field,omitempty"`
	Msg    string `json:"message"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
	return e.Msg
}

func badField(field, format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Field: field, Msg: fmt.Sprintf(format, args...)}
}

func notFound(what, id string) error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Msg: fmt.Sprintf("%s %q does not exist", what, id)}
}

func conflict(format string, args ...any) error {
	return &Error{Status: http.StatusConflict, Code: "conflict", Msg: fmt.Sprintf(format, args...)}
}

func refused(format string, args ...any) error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: "refused", Msg: fmt.Sprintf(format, args...)}
}

// IsNotFound reports whether err is a market not_found error.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == "not_found"
}

// randomHex returns n random bytes as upper-case hex.
func (m *Market) randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(m.rand, b); err != nil {
		return "", fmt.Errorf("market: random: %w", err)
	}
	return strings.ToUpper(hex.EncodeToString(b)), nil
}

const idAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// randomCode returns n characters of an unambiguous upper-case alphabet.
func (m *Market) randomCode(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(m.rand, b); err != nil {
		return "", fmt.Errorf("market: random: %w", err)
	}
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b), nil
}

// newID returns prefix + 16 random characters.
func (m *Market) newID(prefix string) (string, error) {
	c, err := m.randomCode(16)
	if err != nil {
		return "", err
	}
	return prefix + strings.ToLower(c), nil
}

// newUUID returns a random RFC 4122 version-4 UUID (businessId).
func (m *Market) newUUID() (string, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(m.rand, b); err != nil {
		return "", fmt.Errorf("market: random: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}
