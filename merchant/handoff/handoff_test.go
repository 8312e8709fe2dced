package handoff_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/merchant/handoff"
)

type target struct {
	fail    atomic.Bool
	calls   atomic.Int64
	answer  []byte
	started chan struct{}
	block   chan struct{}
}

func (t *target) Name() string { return "test" }

// pick is a Deliverer's Target choosing t for every event.
func (t *target) pick(*handoff.Stored) handoff.Target { return t }

// count runs a COUNT query.
func count(t *testing.T, d *db.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := d.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (t *target) Deliver(ctx context.Context, ev *handoff.Stored, attempt int) ([]byte, error) {
	t.calls.Add(1)
	if t.started != nil {
		t.started <- struct{}{}
		<-t.block
	}
	if t.fail.Load() {
		return nil, errors.New("receiver down")
	}
	return t.answer, nil
}

func setup(t *testing.T, backend string) (*db.DB, *clock.Virtual) {
	t.Helper()
	d := dbtest.OpenMigrated(t, backend, jobs.Migrate, handoff.Migrate)
	return d, clock.NewVirtual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

func emit(t *testing.T, d *db.DB, now time.Time, ev handoff.Event) string {
	t.Helper()
	var id string
	err := d.Tx(context.Background(), func(tx *db.Tx) error {
		var err error
		id, err = handoff.Emit(context.Background(), tx, now, ev)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestEmitRollsBackWithTheChange(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			d, c := setup(t, b)
			ctx := context.Background()
			boom := errors.New("the change failed")
			err := d.Tx(ctx, func(tx *db.Tx) error {
				if _, err := handoff.Emit(ctx, tx, c.Now(), handoff.Event{Type: "x.y", Subject: "s", Data: 1}); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatal(err)
			}
			n, _ := handoff.Counts(ctx, d)
			jc, _ := jobs.Counts(ctx, d)
			if n[handoff.StatePending] != 0 || jc["pending"] != 0 {
				t.Fatalf("rolled-back event survived: %v %v", n, jc)
			}
			if err := d.Tx(ctx, func(tx *db.Tx) error {
				_, err := handoff.Emit(ctx, tx, c.Now(), handoff.Event{Type: "x.y", Data: make(chan int)})
				return err
			}); err == nil {
				t.Fatal("unmarshallable data accepted")
			}
			if err := d.Tx(ctx, func(tx *db.Tx) error {
				_, err := handoff.Emit(ctx, tx, c.Now(), handoff.Event{})
				return err
			}); err == nil {
				t.Fatal("event without a type accepted")
			}
		})
	}
}

func TestDeliveryRetriesDeadReplay(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			d, c := setup(t, b)
			ctx := context.Background()
			tg := &target{answer: []byte(`{"ok":true}`)}
			tg.fail.Store(true)
			var answers atomic.Int64
			dl := &handoff.Deliverer{DB: d, Clock: c, MaxAttempts: 3, Target: tg.pick,
				OnAnswer: func(ctx context.Context, tx *db.Tx, now time.Time, ev *handoff.Stored, a []byte) error {
					answers.Add(1)
					return nil
				}}
			r := &jobs.Runner{DB: d, Clock: c, Handlers: map[string]jobs.Handler{handoff.JobKind: dl.Handle}}
			id := emit(t, d, c.Now(), handoff.Event{Type: "instance.created", Subject: "i1", TestFlag: true, Data: map[string]int{"a": 1}})
			for range 6 {
				if _, err := r.RunDue(ctx); err != nil {
					t.Fatal(err)
				}
				c.Advance(2 * time.Hour)
			}
			ev, err := handoff.Get(ctx, d, id)
			if err != nil || ev.State != handoff.StateDead || ev.Attempts != 3 || ev.LastError == "" || !ev.TestFlag {
				t.Fatalf("after failures: %+v %v", ev, err)
			}
			if tg.calls.Load() != 3 {
				t.Fatalf("%d attempts, want 3", tg.calls.Load())
			}
			tg.fail.Store(false)
			replayed, err := handoff.ReplayDead(ctx, d, c.Now())
			if err != nil || len(replayed) != 1 || replayed[0] != id {
				t.Fatalf("ReplayDead: %v %v", replayed, err)
			}
			if _, err := r.RunDue(ctx); err != nil {
				t.Fatal(err)
			}
			ev, _ = handoff.Get(ctx, d, id)
			if ev.State != handoff.StateDelivered || ev.DeliveredTo != "test" || answers.Load() != 1 {
				t.Fatalf("after replay: %+v answers=%d", ev, answers.Load())
			}
			// Attempt on a delivered event is a no-op.
			if ok, err := dl.Attempt(ctx, id); !ok || err != nil || tg.calls.Load() != 4 {
				t.Fatalf("Attempt on delivered: %v %v calls=%d", ok, err, tg.calls.Load())
			}
			list, _ := handoff.List(ctx, d, handoff.Filter{State: handoff.StateDelivered, Type: "instance.created", Subject: "i1"})
			if len(list) != 1 {
				t.Fatalf("List: %v", list)
			}
		})
	}
}

func TestAnswerErrorFailsTheDelivery(t *testing.T) {
	d, c := setup(t, "sqlite")
	ctx := context.Background()
	tg := &target{answer: []byte(`bad`)}
	dl := &handoff.Deliverer{DB: d, Clock: c, Target: tg.pick,
		OnAnswer: func(context.Context, *db.Tx, time.Time, *handoff.Stored, []byte) error {
			return errors.New("invalid appInfo")
		}}
	id := emit(t, d, c.Now(), handoff.Event{Type: "instance.created", Subject: "i"})
	if ok, err := dl.Attempt(ctx, id); ok || err == nil {
		t.Fatalf("Attempt = %v, %v; want a failure", ok, err)
	}
	ev, _ := handoff.Get(ctx, d, id)
	if ev.State != handoff.StatePending || ev.LastError == "" {
		t.Fatalf("event after a rejected answer: %+v", ev)
	}
}

func TestLeaseKeepsOneDelivererPerEvent(t *testing.T) {
	d, c := setup(t, "sqlite")
	ctx := context.Background()
	tg := &target{started: make(chan struct{}, 1), block: make(chan struct{})}
	dl := &handoff.Deliverer{DB: d, Clock: c, Target: tg.pick}
	id := emit(t, d, c.Now(), handoff.Event{Type: "t", Subject: "s"})
	done := make(chan error, 1)
	go func() { _, err := dl.Attempt(ctx, id); done <- err }()
	<-tg.started
	if _, err := dl.Attempt(ctx, id); !errors.Is(err, handoff.ErrLeased) {
		t.Fatalf("second concurrent attempt: %v, want ErrLeased", err)
	}
	close(tg.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if tg.calls.Load() != 1 {
		t.Fatalf("%d deliveries, want 1", tg.calls.Load())
	}
	if _, err := dl.Attempt(ctx, "evt_missing"); !errors.Is(err, handoff.ErrNotFound) {
		t.Fatalf("unknown event: %v", err)
	}
}

func TestNoTargetRecordsDeliveredToNobody(t *testing.T) {
	d, c := setup(t, "sqlite")
	dl := &handoff.Deliverer{DB: d, Clock: c}
	id := emit(t, d, c.Now(), handoff.Event{Type: "t", Subject: "s"})
	if ok, err := dl.Attempt(context.Background(), id); !ok || err != nil {
		t.Fatal(ok, err)
	}
	ev, _ := handoff.Get(context.Background(), d, id)
	if ev.State != handoff.StateDelivered || ev.DeliveredTo != "nobody" {
		t.Fatalf("%+v", ev)
	}
}

// gbkTarget fails as a webhook behind a proxy whose error page is not UTF-8
// (GBK, say) fails: its error quotes the answer's bytes.
type gbkTarget struct{}

func (gbkTarget) Name() string { return "https://app.example/hook" }
func (gbkTarget) Deliver(context.Context, *handoff.Stored, int) ([]byte, error) {
	return nil, errors.New("webhook: HTTP 502: \xb7\xfe\xce\xf1\xc6\xf7\xb4\xed\xce\xf3" + strings.Repeat("\xe6\xb5\x8b", 400))
}

// A failed attempt whose error is not valid UTF-8 (or is cut inside a
// character) is recorded on PostgreSQL too: the event stays pending with its
// error and no lease, and after the last attempt it is dead. The UPDATE
// failed ("invalid byte sequence"), leaving the event leased and, after its
// last attempt, pending instead of dead.
func TestFailedAttemptWithNonUTF8Error(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d, c := setup(t, b)
			dl := &handoff.Deliverer{DB: d, Clock: c, MaxAttempts: 2, Target: func(*handoff.Stored) handoff.Target { return gbkTarget{} }}
			id := emit(t, d, c.Now(), handoff.Event{Type: "instance.frozen", Subject: "i-1"})
			if _, err := dl.Attempt(ctx, id); err == nil {
				t.Fatal("first attempt: no error")
			}
			ev, err := handoff.Get(ctx, d, id)
			if err != nil {
				t.Fatal(err)
			}
			if ev.State != handoff.StatePending || !strings.HasPrefix(ev.LastError, "webhook: HTTP 502") || !utf8.ValidString(ev.LastError) {
				t.Fatalf("after a failed attempt: state %s, lastError %q", ev.State, ev.LastError)
			}
			if n := count(t, d, `SELECT COUNT(*) FROM handoff_events WHERE event_id = $1 AND lease_until = 0`, id); n != 1 {
				t.Fatal("the failed attempt left its lease")
			}
			if _, err := dl.Attempt(ctx, id); err == nil {
				t.Fatal("last attempt: no error")
			}
			if ev, err = handoff.Get(ctx, d, id); err != nil || ev.State != handoff.StateDead {
				t.Fatalf("after the last attempt: %v %v, want dead", ev.State, err)
			}
		})
	}
}
