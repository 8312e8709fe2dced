package auditnote

import (
	"context"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestNote(t *testing.T) {
	ctx, n := With(context.Background())
	Instance(ctx, "inst-1")
	Add(ctx, "tenant", "t-1")
	Add(ctx, "user", "alice smith\nforged=1")
	Add(ctx, "empty", "")
	Add(ctx, "tenant", "t-2") // replaces
	if got := n.InstanceID(); got != "inst-1" {
		t.Errorf("instance = %q", got)
	}
	if got, want := n.String(), "tenant=t-2 user=alice_smith_forged=1"; got != want {
		t.Errorf("note = %q, want %q", got, want)
	}
}

func TestLimits(t *testing.T) {
	ctx, n := With(context.Background())
	Add(ctx, "long", strings.Repeat("é", MaxValue)) // 2 bytes each: cut on a character boundary
	v := strings.TrimPrefix(n.String(), "long=")
	if len(v) > MaxValue || !strings.HasPrefix(v, "éé") || strings.ContainsRune(v, '\uFFFD') || len(v)%2 != 0 {
		t.Errorf("long value = %q (%d bytes)", v, len(v))
	}
	ctx2, n2 := With(context.Background())
	Add(ctx2, "bytes", strings.Repeat("\xff", 200)) // not UTF-8: replaced, then cut
	if v := strings.TrimPrefix(n2.String(), "bytes="); len(v) > MaxValue || !utf8.ValidString(v) {
		t.Errorf("non-UTF-8 value = %d bytes, valid %v", len(v), utf8.ValidString(v))
	}
	for i := range 20 {
		Add(ctx, "k"+string(rune('a'+i)), "v")
	}
	if got := strings.Count(n.String(), "="); got != maxFields {
		t.Errorf("%d fields noted, want at most %d", got, maxFields)
	}
}

// Without a Note in the context, noting is a no-op.
func TestNoNote(t *testing.T) {
	Instance(context.Background(), "x")
	Add(context.Background(), "k", "v")
}

func TestConcurrent(t *testing.T) {
	ctx, n := With(context.Background())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Add(ctx, "k"+string(rune('a'+i)), "v")
			Instance(ctx, "i")
			_ = n.String()
		}()
	}
	wg.Wait()
	if n.InstanceID() != "i" {
		t.Fatal("instance lost")
	}
}
