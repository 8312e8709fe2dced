package handoff

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Webhook headers.
const (
	HeaderSignature = "Souk-Signature"  // t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>
	HeaderEventID   = "Souk-Event-Id"   // the event id; the same on every retry and replay, for dedupe
	HeaderEventType = "Souk-Event-Type" // e.g. instance.created
	HeaderAttempt   = "Souk-Attempt"    // 1 on the first delivery attempt
)

// DefaultTolerance is how far a signature timestamp may be from the receiver's clock.
const DefaultTolerance = 5 * time.Minute

// ErrSignature is wrapped by every Verify failure.
var ErrSignature = errors.New("handoff: bad webhook signature")

// Sign returns the Souk-Signature header value for body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	return SignAll([]string{secret}, t, body)
}

// SignAll signs body with each of secrets, in order: one v1 entry each
// ("t=…,v1=…,v1=…"). While the webhook secret is rotated, a receiver that
// holds either secret finds its signature among them.
func SignAll(secrets []string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=" + ts)
	for _, s := range secrets {
		b.WriteString(",v1=" + mac(s, ts, body))
	}
	return b.String()
}

func mac(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a Souk-Signature header against body with any of secrets
// (several, during a rotation). The header may carry several v1 entries.
// The timestamp must be within tolerance of now (0 → DefaultTolerance).
func Verify(secrets []string, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if len(header) > 4096 {
		return fmt.Errorf("%w: header too long", ErrSignature)
	}
	var (
		ts   string
		sigs []string
	)
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, strings.ToLower(v))
		}
	}
	if ts == "" || len(sigs) == 0 {
		return fmt.Errorf("%w: missing t or v1", ErrSignature)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp", ErrSignature)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp outside tolerance", ErrSignature)
	}
	for _, secret := range secrets {
		want := []byte(mac(secret, ts, body))
		for _, s := range sigs {
			if hmac.Equal(want, []byte(s)) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: no signature matches", ErrSignature)
}
