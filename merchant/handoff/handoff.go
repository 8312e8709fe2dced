// Package handoff is souk's outbox towards the vendor's application.
//
// Every state change on the merchant side (instances, and the kit directory)
// calls Emit inside the transaction of the change. The event row and the job
// that delivers it commit together with the change, so nothing is announced
// that did not happen and nothing that happened is lost. A Deliverer, run as
// the handler of jobs of kind JobKind, then delivers each event at least once
// to a Target (a signed webhook, an in-process provisioner, or the sandbox),
// with retries and backoff, a dead-letter state and replay by command.
package handoff

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/jobs"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// JobKind is the jobs kind whose handler is Deliverer.Handle.
const JobKind = "handoff.deliver"

// Event states.
const (
	StatePending   = "pending"
	StateDelivered = "delivered"
	StateDead      = "dead"
)

// IsState reports whether s is one of the event states.
func IsState(s string) bool {
	return s == StatePending || s == StateDelivered || s == StateDead
}

// Event is one state change to announce to the vendor's application.
type Event struct {
	Type     string // "instance.created", "instance.renewed", … ; kit: "tenant.synced", …
	Subject  string // instanceId, tenantId, …
	TestFlag bool   // sandbox events go to the sandbox sink, never to the real vendor app
	Data     any    // JSON-marshalled into the event body
}

// Stored is an event as recorded in the outbox.
type Stored struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Subject     string          `json:"subject"`
	TestFlag    bool            `json:"testFlag"`
	Data        json.RawMessage `json:"data"`
	CreatedAt   time.Time       `json:"createdAt"`
	State       string          `json:"state"`
	Attempts    int             `json:"attempts"`
	LastError   string          `json:"lastError,omitempty"`
	DeliveredAt time.Time       `json:"deliveredAt,omitzero"`
	DeliveredTo string          `json:"deliveredTo,omitempty"`
	Replays     int             `json:"replays"`

	jobless bool      // emitted by EmitClaimedMany: no delivery job yet
	due     time.Time // when its job, if one becomes needed, is due at the earliest
}

// ErrNotFound is returned for an unknown event id.
var ErrNotFound = errors.New("handoff: no such event")

// Migrate creates the outbox tables (component "handoff"). jobs.Migrate must
// also have run on the same database.
func Migrate(ctx context.Context, d *db.DB) error {
	return db.MigrateFS(ctx, d, "handoff", migrationFS, "migrations")
}

// Emit records ev in the caller's transaction and schedules its delivery now.
func Emit(ctx context.Context, tx *db.Tx, now time.Time, ev Event) (eventID string, err error) {
	return EmitAt(ctx, tx, now, ev, now)
}

// EmitAt is Emit with the first delivery attempt scheduled at due (the
// merchant uses it to try an inline delivery first, leaving the job as the
// durable fallback).
func EmitAt(ctx context.Context, tx *db.Tx, now time.Time, ev Event, due time.Time) (eventID string, err error) {
	st, err := emit(ctx, tx, now, ev, due, time.Time{})
	if err != nil {
		return "", err
	}
	return st.ID, nil
}

// EmitClaimedAt is EmitAt with the first delivery attempt taken by the
// caller (as Claim does) in the same INSERT: the event is stored with one
// attempt counted and leased until until. After the commit the caller makes
// the attempt with AttemptStored on the returned event.
func EmitClaimedAt(ctx context.Context, tx *db.Tx, now time.Time, ev Event, due, until time.Time) (*Stored, error) {
	return emit(ctx, tx, now, ev, due, until)
}

// emit stores ev and its delivery job; a non-zero until claims the first
// attempt.
func emit(ctx context.Context, tx *db.Tx, now time.Time, ev Event, due, until time.Time) (*Stored, error) {
	st, err := newStored(ev, now)
	if err != nil {
		return nil, err
	}
	var lease int64
	if !until.IsZero() {
		st.Attempts, lease = 1, until.UnixMilli()
	}
	if _, err := tx.Exec(ctx, `INSERT INTO handoff_events (event_id, type, subject, test_flag, data, created_at, state, attempts, lease_until)
		VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)`, st.ID, ev.Type, ev.Subject, db.Bool(ev.TestFlag), string(st.Data), now.UnixMilli(),
		st.Attempts, lease); err != nil {
		return nil, fmt.Errorf("handoff: insert event: %w", err)
	}
	if err := enqueue(ctx, tx, now, st.ID, 0, due); err != nil {
		return nil, err
	}
	return st, nil
}

// newStored checks ev and returns it as a pending event with a new id.
func newStored(ev Event, now time.Time) (*Stored, error) {
	if ev.Type == "" {
		return nil, errors.New("handoff: event type is empty")
	}
	data, err := json.Marshal(ev.Data)
	if err != nil {
		return nil, fmt.Errorf("handoff: marshal %s data: %w", ev.Type, err)
	}
	return &Stored{ID: NewID(now), Type: ev.Type, Subject: ev.Subject, TestFlag: ev.TestFlag, Data: json.RawMessage(data),
		CreatedAt: time.UnixMilli(now.UnixMilli()).UTC(), State: StatePending}, nil
}

// jobKey is the unique key of the job delivering event id (replay n).
func jobKey(id string, replay int) string {
	if replay > 0 {
		return fmt.Sprintf("handoff:%s:replay:%d", id, replay)
	}
	return "handoff:" + id
}

func enqueue(ctx context.Context, tx *db.Tx, now time.Time, id string, replay int, due time.Time) error {
	payload, _ := json.Marshal(jobPayload{EventID: id})
	key := jobKey(id, replay)
	if _, _, err := jobs.Enqueue(ctx, tx, now, jobs.New{Kind: JobKind, Key: key, Payload: payload, DueAt: due}); err != nil {
		return fmt.Errorf("handoff: enqueue delivery: %w", err)
	}
	return nil
}

type jobPayload struct {
	EventID string `json:"eventId"`
}

// NewID returns a new event id made at now: "evt_" and 32 hex digits, the
// first 12 the Unix millisecond of now and the other 20 random (80 bits), as
// in a version 7 UUID. Ids made later sort later, so the primary key index of
// the outbox (and the job keys, which embed the id) grows at its end, in the
// pages a busy writer has just written, rather than in a random page for
// every event (docs/performance.md).
func NewID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("handoff: crypto/rand: %v", err))
	}
	return "evt_" + hex.EncodeToString(b[:])
}

const eventColumns = `event_id, type, subject, test_flag, data, created_at, state, attempts, last_error, delivered_at, delivered_to, replays`

type scanner interface{ Scan(dest ...any) error }

// scanEvent reads the eventColumns of one row, then any extra columns
// selected after them into extra.
func scanEvent(s scanner, extra ...any) (*Stored, error) {
	var (
		ev                     Stored
		tf                     int
		data                   string
		createdAt, deliveredAt int64
	)
	dest := append([]any{&ev.ID, &ev.Type, &ev.Subject, &tf, &data, &createdAt, &ev.State, &ev.Attempts, &ev.LastError, &deliveredAt, &ev.DeliveredTo, &ev.Replays}, extra...)
	if err := s.Scan(dest...); err != nil {
		return nil, err
	}
	ev.TestFlag = tf != 0
	ev.Data = json.RawMessage(data)
	ev.CreatedAt = time.UnixMilli(createdAt).UTC()
	if deliveredAt != 0 {
		ev.DeliveredAt = time.UnixMilli(deliveredAt).UTC()
	}
	return &ev, nil
}

// Get returns one event.
func Get(ctx context.Context, d *db.DB, id string) (*Stored, error) {
	ev, err := scanEvent(d.QueryRow(ctx, `SELECT `+eventColumns+` FROM handoff_events WHERE event_id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("handoff: get %s: %w", id, err)
	}
	return ev, nil
}

// Filter selects events for List. Empty fields match everything.
type Filter struct {
	State   string
	Type    string
	Subject string
	Limit   int // default 100
}

// List returns events, newest first.
func List(ctx context.Context, d *db.DB, f Filter) ([]Stored, error) {
	var (
		where []string
		args  []any
	)
	add := func(col, v string) {
		if v != "" {
			args = append(args, v)
			where = append(where, fmt.Sprintf("%s = $%d", col, len(args)))
		}
	}
	add("state", f.State)
	add("type", f.Type)
	add("subject", f.Subject)
	q := `SELECT ` + eventColumns + ` FROM handoff_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	args = append(args, limit)
	q += fmt.Sprintf(" ORDER BY created_at DESC, event_id DESC LIMIT $%d", len(args))
	rows, err := d.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("handoff: list: %w", err)
	}
	defer rows.Close()
	var out []Stored
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("handoff: list: %w", err)
		}
		out = append(out, *ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("handoff: list: %w", err)
	}
	return out, nil
}

// Counts returns the number of events by state.
func Counts(ctx context.Context, d *db.DB) (map[string]int, error) {
	rows, err := d.Query(ctx, `SELECT state, COUNT(*) FROM handoff_events GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("handoff: counts: %w", err)
	}
	defer rows.Close()
	out := map[string]int{StatePending: 0, StateDelivered: 0, StateDead: 0}
	for rows.Next() {
		var (
			s string
			n int
		)
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("handoff: counts: %w", err)
		}
		out[s] = n
	}
	return out, rows.Err()
}

// Replay delivers an event again, whatever its state (a delivered event is
// delivered once more; a dead one gets a fresh set of attempts).
func Replay(ctx context.Context, d *db.DB, now time.Time, id string) error {
	_, err := replay(ctx, d, now, id, false)
	return err
}

// replay is Replay; with onlyDead, an event that is no longer dead (replayed
// by someone else meanwhile) is left alone, and replayed=false.
func replay(ctx context.Context, d *db.DB, now time.Time, id string, onlyDead bool) (replayed bool, err error) {
	err = d.Tx(ctx, func(tx *db.Tx) error {
		replayed = false
		var (
			replays int
			state   string
		)
		// Locked: a replay of the event at once waits for this one, then
		// counts another (and gets a job of its own).
		err := tx.QueryRow(ctx, `SELECT replays, state FROM handoff_events WHERE event_id = $1`+forUpdate(tx), id).Scan(&replays, &state)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("handoff: replay %s: %w", id, err)
		}
		if onlyDead && state != StateDead {
			return nil
		}
		replays++
		if _, err := tx.Exec(ctx, `UPDATE handoff_events SET state = 'pending', attempts = 0, lease_until = 0, replays = $2
			WHERE event_id = $1`, id, replays); err != nil {
			return fmt.Errorf("handoff: replay %s: %w", id, err)
		}
		replayed = true
		return enqueue(ctx, tx, now, id, replays, now)
	})
	return replayed, err
}

// ReplayDead replays every dead event and returns their ids. An event that
// another ReplayDead (another host, the API) replays at the same time is
// replayed once, by one of them.
func ReplayDead(ctx context.Context, d *db.DB, now time.Time) ([]string, error) {
	var ids []string
	for {
		evs, err := List(ctx, d, Filter{State: StateDead, Limit: 500})
		if err != nil {
			return ids, err
		}
		if len(evs) == 0 {
			return ids, nil
		}
		for _, ev := range evs {
			ok, err := replay(ctx, d, now, ev.ID, true)
			if err != nil {
				return ids, err
			}
			if ok {
				ids = append(ids, ev.ID)
			}
		}
	}
}

// forUpdate locks the rows a read-modify-write transaction reads, on
// PostgreSQL, whose READ COMMITTED would otherwise let two replicas read the
// same row and both write what they decided from it. SQLite transactions are
// IMMEDIATE and run one at a time already.
func forUpdate(tx *db.Tx) string {
	if tx.Dialect == db.Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// EmitClaimedMany is EmitClaimedAt for several events in one transaction,
// written with one multi-row statement, and without their delivery jobs:
// the merchant's batched creates use it. The caller attempts every event at
// once under its lease (until); the job of an event is enqueued only when it
// is needed: by Failed (at due at the earliest) when the attempt fails, or
// by Sweep once the lease has run out with no outcome recorded (the process
// holding it stopped). A delivered event, the common case, never has a job.
func EmitClaimedMany(ctx context.Context, tx *db.Tx, now time.Time, evs []Event, due, until time.Time) ([]*Stored, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	if until.IsZero() {
		return nil, errors.New("handoff: EmitClaimedMany needs a lease")
	}
	out := make([]*Stored, len(evs))
	rows := db.SizeClass(len(evs)) // the last event repeated: a no-op by its primary key
	args := make([]any, 0, rows*9)
	lease := until.UnixMilli()
	for i, ev := range evs {
		st, err := newStored(ev, now)
		if err != nil {
			return nil, err
		}
		st.Attempts, st.jobless, st.due = 1, true, due
		out[i] = st
	}
	for i := 0; i < rows; i++ {
		st := out[min(i, len(out)-1)]
		args = append(args, st.ID, st.Type, st.Subject, db.Bool(st.TestFlag), string(st.Data), now.UnixMilli(), st.Attempts, lease, StatePending)
	}
	q := `INSERT INTO handoff_events (event_id, type, subject, test_flag, data, created_at, attempts, lease_until, state) VALUES ` +
		db.Values(rows, 9, 1) + ` ON CONFLICT (event_id) DO NOTHING`
	if _, err := tx.Exec(ctx, q, args...); err != nil {
		return nil, fmt.Errorf("handoff: insert %d events: %w", len(evs), err)
	}
	return out, nil
}

// sweepBatch bounds the events one statement of Sweep takes.
const sweepBatch = 500

// sweepQuery takes the leased pending events whose lease ran out ($1 = $2 =
// now, $3 = sweepBatch). Its conditions repeat the WHERE of the partial
// index handoff_events_leased, so that it reads that index and nothing else
// (TestSweepReadsOnlyLeasedEvents).
const sweepQuery = `UPDATE handoff_events SET lease_until = 0
	WHERE state = 'pending' AND lease_until > 0 AND lease_until <= $1 AND event_id IN (
		SELECT event_id FROM handoff_events WHERE state = 'pending' AND lease_until > 0 AND lease_until <= $2
		ORDER BY lease_until LIMIT $3)
	RETURNING event_id, replays`

// Sweep enqueues, due now, the delivery job of every pending event whose
// lease ran out before its outcome was recorded (the index
// handoff_events_leased holds exactly the leased pending events), and
// clears their leases so that each is swept once. Replicas sharing a
// PostgreSQL database may sweep at the same time: the conditional UPDATE
// gives each event to one of them, and the job's unique key makes a second
// enqueue a no-op. It returns how many events it swept.
func Sweep(ctx context.Context, d *db.DB, now time.Time) (int, error) {
	total := 0
	for {
		var n int
		err := d.Tx(ctx, func(tx *db.Tx) error {
			n = 0
			rows, err := tx.Query(ctx, sweepQuery, now.UnixMilli(), now.UnixMilli(), sweepBatch)
			if err != nil {
				return fmt.Errorf("handoff: sweep: %w", err)
			}
			defer rows.Close()
			var js []jobs.New
			for rows.Next() {
				var id string
				var replays int
				if err := rows.Scan(&id, &replays); err != nil {
					return fmt.Errorf("handoff: sweep: %w", err)
				}
				payload, _ := json.Marshal(jobPayload{EventID: id})
				js = append(js, jobs.New{Kind: JobKind, Key: jobKey(id, replays), Payload: payload, DueAt: now})
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("handoff: sweep: %w", err)
			}
			rows.Close()
			n = len(js)
			for len(js) > 0 {
				k := min(len(js), 128)
				if err := jobs.EnqueueMany(ctx, tx, now, js[:k]); err != nil {
					return fmt.Errorf("handoff: sweep: %w", err)
				}
				js = js[k:]
			}
			return nil
		})
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
}
