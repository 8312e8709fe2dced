package handoff

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/internal/redact"
	"github.com/soukhq/souk/jobs"
)

// Target receives events. Deliver returns the receiver's answer (may be
// empty); an error means "not delivered, try again later".
type Target interface {
	Deliver(ctx context.Context, ev *Stored, attempt int) (answer []byte, err error)
	// Name identifies the target in the outbox (delivered_to) and in logs.
	Name() string
}

// Envelope is the JSON body of a webhook delivery.
type Envelope struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Subject   string          `json:"subject"`
	TestFlag  bool            `json:"testFlag"`
	CreatedAt time.Time       `json:"createdAt"`
	Data      json.RawMessage `json:"data"`
}

// EnvelopeOf builds the delivery body of ev.
func EnvelopeOf(ev *Stored) ([]byte, error) {
	return json.Marshal(Envelope{ID: ev.ID, Type: ev.Type, Subject: ev.Subject, TestFlag: ev.TestFlag, CreatedAt: ev.CreatedAt, Data: ev.Data})
}

// MaxAnswer caps how much of a webhook answer is read.
const MaxAnswer = 1 << 20

// Webhook delivers events by HTTP POST, signed with Secret.
type Webhook struct {
	URL     string
	Secrets []string     // each signs the body (SignAll); several while the secret is rotated
	Client  *http.Client // nil → a client with a 10 s timeout
	Clock   clock.Clock  // for the signature timestamp; nil → real clock
}

// Name implements Target.
// Name says where the event went, without the credentials the URL may carry
// (it is logged and stored as the event's deliveredTo).
func (w *Webhook) Name() string { return "webhook " + redact.URL(w.URL) }

// Deliver implements Target: any 2xx answer is a delivery; its body is returned.
func (w *Webhook) Deliver(ctx context.Context, ev *Stored, attempt int) ([]byte, error) {
	body, err := EnvelopeOf(ev)
	if err != nil {
		return nil, fmt.Errorf("webhook: envelope: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("webhook: request: %w", err)
	}
	var now time.Time
	if w.Clock != nil {
		now = w.Clock.Now()
	} else {
		now = time.Now()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "souk-merchant")
	req.Header.Set(HeaderSignature, SignAll(w.Secrets, now, body))
	req.Header.Set(HeaderEventID, ev.ID)
	req.Header.Set(HeaderEventType, ev.Type)
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("webhook: post: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer))
	if err != nil {
		return nil, fmt.Errorf("webhook: read answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("webhook: HTTP %d: %.200s", resp.StatusCode, answer)
	}
	return answer, nil
}

// Deliverer delivers outbox events; its Handle is the jobs handler of JobKind.
type Deliverer struct {
	DB *db.DB
	// Group, if set, commits the attempt's bookkeeping (lease, outcome)
	// together with other concurrent small transactions (db.Group).
	Group  *db.Group
	Clock  clock.Clock
	Logger *slog.Logger
	// Target picks where an event goes (sandbox events have TestFlag set).
	// A nil Target (or a nil result) records the event as delivered to nobody.
	Target func(ev *Stored) Target
	// OnAnswer, if set, runs in the transaction that marks the event
	// delivered, with the receiver's answer. An error fails the delivery (it
	// is retried), so an answer is never half-applied.
	OnAnswer func(ctx context.Context, tx *db.Tx, now time.Time, ev *Stored, answer []byte) error
	// OnResult, if set, is told about every attempt (for metrics).
	OnResult func(ev *Stored, err error, dead bool)
	// MaxAttempts before the event goes to the dead letter (default 12).
	MaxAttempts int
	// Lease: how long one attempt keeps other deliverers off the event (default 1 min).
	Lease time.Duration
}

// ErrLeased means another deliverer is attempting the event right now.
var ErrLeased = errors.New("handoff: event is being delivered")

func (d *Deliverer) maxAttempts() int {
	if d.MaxAttempts > 0 {
		return d.MaxAttempts
	}
	return 12
}

func (d *Deliverer) lease() time.Duration {
	if d.Lease > 0 {
		return d.Lease
	}
	return time.Minute
}

func (d *Deliverer) logger() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Handle is the jobs.Handler of JobKind.
func (d *Deliverer) Handle(ctx context.Context, j *jobs.Job) error {
	var p jobPayload
	if err := json.Unmarshal(j.Payload, &p); err != nil || p.EventID == "" {
		return jobs.Permanent(fmt.Errorf("handoff: bad job payload %q", j.Payload))
	}
	_, err := d.Attempt(ctx, p.EventID)
	var le *leasedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &le):
		return jobs.RetryAt(le.until, err)
	case errors.Is(err, ErrNotFound), errors.Is(err, errDead):
		return jobs.Permanent(err)
	default:
		return err
	}
}

type leasedError struct{ until time.Time }

func (e *leasedError) Error() string { return ErrLeased.Error() }
func (e *leasedError) Unwrap() error { return ErrLeased }

var errDead = errors.New("handoff: event moved to the dead letter")

// Attempt delivers event id once now, unless it is already delivered (then
// delivered=true, err=nil) or dead. It is what the job runs; the merchant
// also calls it inline to complete provisioning within the request budget.
func (d *Deliverer) Attempt(ctx context.Context, id string) (delivered bool, err error) {
	now := d.Clock.Now()
	var ev *Stored
	err = d.tx(ctx, func(tx *db.Tx) error {
		var leaseUntil int64
		// Locked until the lease is written: a deliverer of another replica
		// attempting the event at once waits, then finds it leased.
		row := tx.QueryRow(ctx, `SELECT `+eventColumns+`, lease_until FROM handoff_events WHERE event_id = $1`+forUpdate(tx), id)
		e, err := scanEvent(row, &leaseUntil)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("handoff: load %s: %w", id, err)
		}
		ev = e
		if ev.State != StatePending {
			return nil
		}
		if leaseUntil > now.UnixMilli() {
			return &leasedError{until: time.UnixMilli(leaseUntil)}
		}
		ev.Attempts++
		_, err = tx.Exec(ctx, `UPDATE handoff_events SET attempts = $2, lease_until = $3 WHERE event_id = $1`,
			id, ev.Attempts, now.Add(d.lease()).UnixMilli())
		return err
	})
	if err != nil {
		return false, err
	}
	return d.attemptUnlessSettled(ctx, ev)
}

// attemptUnlessSettled delivers ev unless it is already delivered (true, nil)
// or dead (an errDead error).
func (d *Deliverer) attemptUnlessSettled(ctx context.Context, ev *Stored) (delivered bool, err error) {
	switch ev.State {
	case StateDelivered:
		return true, nil
	case StateDead:
		return false, fmt.Errorf("%w: %s", errDead, ev.ID)
	}
	return d.deliver(ctx, ev)
}

// deliver makes one attempt of ev, whose lease the caller holds, and records
// the outcome.
func (d *Deliverer) deliver(ctx context.Context, ev *Stored) (delivered bool, err error) {
	to, answer, err := d.Try(ctx, ev)
	if err != nil {
		return d.Failed(ctx, ev, err)
	}
	return d.Record(ctx, ev, to, answer)
}

// Try makes one attempt of ev, whose lease the caller holds (EmitClaimedAt,
// Claim), without recording its outcome: the caller records it with Record
// (or, for several events at once, MarkDeliveredMany and Recorded), or with
// Failed. It returns the target's name and answer.
func (d *Deliverer) Try(ctx context.Context, ev *Stored) (to string, answer []byte, err error) {
	var target Target
	if d.Target != nil {
		target = d.Target(ev)
	}
	to = "nobody"
	if target != nil {
		to = target.Name()
		answer, err = target.Deliver(ctx, ev, ev.Attempts)
	}
	return to, answer, err
}

// Record records a successful attempt of ev (Try) and applies the answer
// (OnAnswer) in one transaction, even when ctx ended meanwhile.
func (d *Deliverer) Record(ctx context.Context, ev *Stored, to string, answer []byte) (delivered bool, err error) {
	dbctx := context.WithoutCancel(ctx)
	err = d.markDelivered(dbctx, ev, to, answer)
	if err != nil {
		return d.Failed(ctx, ev, err)
	}
	d.Recorded(ev, to)
	return true, nil
}

// Recorded reports a delivery recorded by the caller (MarkDeliveredMany) to
// the logs and OnResult.
func (d *Deliverer) Recorded(ev *Stored, to string) {
	d.logger().Debug("handoff delivered", "event", ev.ID, "type", ev.Type, "subject", ev.Subject, "to", to, "attempt", ev.Attempts)
	if d.OnResult != nil {
		d.OnResult(ev, nil, false)
	}
}

// Failed records a failed attempt of ev (its error err): the event stays
// pending for its job to retry, or is dead-lettered after the last attempt.
// The error returned says which.
func (d *Deliverer) Failed(ctx context.Context, ev *Stored, err error) (delivered bool, _ error) {
	dbctx := context.WithoutCancel(ctx)
	dead := ev.Attempts >= d.maxAttempts()
	if ferr := d.markFailed(dbctx, ev, err, dead); ferr != nil {
		d.logger().Error("handoff: record failed attempt", "event", ev.ID, "err", ferr)
	}
	if d.OnResult != nil {
		d.OnResult(ev, err, dead)
	}
	if dead {
		d.logger().Error("handoff event dead-lettered", "event", ev.ID, "type", ev.Type, "subject", ev.Subject, "attempts", ev.Attempts, "err", err)
		return false, fmt.Errorf("%w: %s after %d attempts: %w", errDead, ev.ID, ev.Attempts, err)
	}
	d.logger().Warn("handoff delivery failed", "event", ev.ID, "type", ev.Type, "attempt", ev.Attempts, "err", err)
	return false, err
}

// MarkDeliveredMany is the transaction part of Record for several events
// at once, in the caller's transaction: the pending ones among evs are marked
// delivered (to the targets named by to, one per event) and their jobs
// completed, with two multi-row statements. It returns the events it changed;
// the caller applies their answers in the same transaction (the others were
// delivered concurrently, or replayed meanwhile: nothing to apply twice),
// then calls Recorded for each after the commit.
func MarkDeliveredMany(ctx context.Context, tx *db.Tx, now time.Time, evs []*Stored, to []string) (map[string]bool, error) {
	changed := map[string]bool{}
	if len(evs) == 0 {
		return changed, nil
	}
	// Placeholders in the order they appear, none repeated (positional
	// binding on SQLite).
	rows := db.SizeClass(len(evs))
	args := make([]any, 0, 3*rows+1)
	args = append(args, now.UnixMilli())
	var cases, in strings.Builder
	for i := 0; i < rows; i++ {
		j := min(i, len(evs)-1)
		args = append(args, evs[j].ID, db.Text(to[j], 300))
		fmt.Fprintf(&cases, " WHEN $%d THEN $%d", 2*i+2, 2*i+3)
	}
	for i := 0; i < rows; i++ {
		if i > 0 {
			in.WriteString(", ")
		}
		fmt.Fprintf(&in, "$%d", 2*rows+2+i)
		args = append(args, evs[min(i, len(evs)-1)].ID)
	}
	rs, err := tx.Query(ctx, `UPDATE handoff_events SET state = 'delivered', delivered_at = $1, delivered_to = CASE event_id`+cases.String()+` END,
		last_error = '', lease_until = 0 WHERE event_id IN (`+in.String()+`) AND state = 'pending' RETURNING event_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("handoff: mark %d delivered: %w", len(evs), err)
	}
	defer rs.Close()
	for rs.Next() {
		var id string
		if err := rs.Scan(&id); err != nil {
			return nil, fmt.Errorf("handoff: mark %d delivered: %w", len(evs), err)
		}
		changed[id] = true
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("handoff: mark %d delivered: %w", len(evs), err)
	}
	rs.Close()
	keys := make([]string, 0, len(changed))
	for _, ev := range evs {
		if changed[ev.ID] && !ev.jobless {
			keys = append(keys, jobKey(ev.ID, ev.Replays))
		}
	}
	// As in markDelivered: the inline attempt did the jobs' work (events
	// emitted by EmitClaimedMany have none).
	if len(keys) > 0 {
		if err := jobs.CompleteMany(ctx, tx, now, keys); err != nil {
			return nil, fmt.Errorf("handoff: %w", err)
		}
	}
	return changed, nil
}

// tx runs fn in a transaction of its own, or group-committed with Group.
func (d *Deliverer) tx(ctx context.Context, fn func(tx *db.Tx) error) error {
	if d.Group != nil {
		return d.Group.Do(ctx, fn)
	}
	return d.DB.Tx(ctx, fn)
}

func (d *Deliverer) markDelivered(ctx context.Context, ev *Stored, to string, answer []byte) error {
	return d.tx(ctx, func(tx *db.Tx) error {
		now := d.Clock.Now()
		res, err := tx.Exec(ctx, `UPDATE handoff_events SET state = 'delivered', delivered_at = $2, delivered_to = $3, last_error = '', lease_until = 0
			WHERE event_id = $1 AND state = 'pending'`, ev.ID, now.UnixMilli(), db.Text(to, 300))
		if err != nil {
			return fmt.Errorf("handoff: mark delivered: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // delivered concurrently (or replayed meanwhile): nothing to apply twice
		}
		// An inline attempt finished the work of the event's job before it
		// was due: complete it so that no runner claims it for nothing.
		if _, err := jobs.Complete(ctx, tx, now, jobKey(ev.ID, ev.Replays)); err != nil {
			return fmt.Errorf("handoff: %w", err)
		}
		if d.OnAnswer != nil {
			if err := d.OnAnswer(ctx, tx, now, ev, answer); err != nil {
				return fmt.Errorf("handoff: apply answer: %w", err)
			}
		}
		return nil
	})
}

func (d *Deliverer) markFailed(ctx context.Context, ev *Stored, cause error, dead bool) error {
	state := StatePending
	if dead {
		state = StateDead
	}
	msg := "unknown error"
	if cause != nil {
		msg = cause.Error()
	}
	const q = `UPDATE handoff_events SET state = $2, last_error = $3, lease_until = 0 WHERE event_id = $1 AND state = 'pending'`
	if !ev.jobless || dead {
		_, err := d.DB.Exec(ctx, q, ev.ID, state, db.Text(msg, 1000))
		return err
	}
	// An event of EmitClaimedMany gets its job now, in the transaction that
	// releases its lease (a failure here leaves the lease to run out: Sweep
	// then enqueues the job).
	return d.DB.Tx(ctx, func(tx *db.Tx) error {
		res, err := tx.Exec(ctx, q, ev.ID, state, db.Text(msg, 1000))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // delivered, or swept, meanwhile
		}
		now := d.Clock.Now()
		return enqueue(ctx, tx, now, ev.ID, ev.Replays, later(ev.due, now))
	})
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
