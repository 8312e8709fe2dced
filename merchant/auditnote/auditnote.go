// Package auditnote lets a handler served behind the merchant's audit
// decorator say, in the record of the call it serves, what the call was about:
// the instance, and a few named values (a tenant, an application, a user, why
// a sign-in failed). The decorator puts a Note in the request's context
// (With), the handler fills it (Instance, Add), and the decorator writes it
// with the record. A handler called without a Note (a test, a library user
// without the decorator) notes nothing.
//
// Notes name things, never secrets: no token, code, password or key.
package auditnote

import (
	"context"
	"strings"
	"sync"
)

// MaxValue bounds one noted value (bytes); a longer one is cut.
const MaxValue = 128

// maxFields bounds the values of one note; later ones are dropped.
const maxFields = 8

// Note is what a handler noted of one call. Its methods are safe for
// concurrent use.
type Note struct {
	mu       sync.Mutex
	instance string
	fields   []string // key=value
}

type ctxKey struct{}

// With returns ctx carrying a new Note, and the Note.
func With(ctx context.Context) (context.Context, *Note) {
	n := &Note{}
	return context.WithValue(ctx, ctxKey{}, n), n
}

func from(ctx context.Context) *Note {
	n, _ := ctx.Value(ctxKey{}).(*Note)
	return n
}

// Instance notes the instance the call acts on.
func Instance(ctx context.Context, id string) {
	if n := from(ctx); n != nil && id != "" {
		n.mu.Lock()
		n.instance = clean(id)
		n.mu.Unlock()
	}
}

// Add notes key=value (an empty value is not noted; a key noted again is
// replaced).
func Add(ctx context.Context, key, value string) {
	n := from(ctx)
	if n == nil || value == "" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	kv := key + "=" + clean(value)
	for i, f := range n.fields {
		if strings.HasPrefix(f, key+"=") {
			n.fields[i] = kv
			return
		}
	}
	if len(n.fields) < maxFields {
		n.fields = append(n.fields, kv)
	}
}

// InstanceID is the noted instance ("" when none).
func (n *Note) InstanceID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.instance
}

// String is the noted values, "key=value" separated by spaces, in the order
// first noted.
func (n *Note) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.fields, " ")
}

// clean makes v valid UTF-8, cuts it to MaxValue bytes (on a character
// boundary) and replaces spaces and control characters (NUL included), so
// that a value cannot forge another field or a line of the record.
func clean(v string) string {
	v = strings.ToValidUTF8(v, "\uFFFD") // before the cut: a replaced byte grows to three
	if len(v) > MaxValue {
		cut := MaxValue
		for cut > 0 && !utf8Start(v[cut]) {
			cut--
		}
		v = v[:cut]
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return '_'
		}
		return r
	}, v)
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
