package handoff

import (
	"context"
	"fmt"
	"time"

	"github.com/soukhq/souk/db"
)

// Claim takes the next delivery attempt of event id for the caller, in the
// caller's transaction (typically the one that emitted the event): the
// attempt is counted and the event leased until until, so that neither its
// job nor another deliverer attempts it meanwhile. After the commit the
// caller makes the attempt with AttemptClaimed. It saves the separate lease
// transaction of Attempt on a request's critical path.
func Claim(ctx context.Context, tx *db.Tx, id string, until time.Time) error {
	if _, err := tx.Exec(ctx, `UPDATE handoff_events SET attempts = attempts + 1, lease_until = $2 WHERE event_id = $1 AND state = 'pending'`,
		id, until.UnixMilli()); err != nil {
		return fmt.Errorf("handoff: claim %s: %w", id, err)
	}
	return nil
}

// AttemptClaimed makes the delivery attempt of event id that the caller
// claimed (Claim, committed). Like Attempt, an event delivered meanwhile
// counts as delivered and a dead one is not attempted.
func (d *Deliverer) AttemptClaimed(ctx context.Context, id string) (delivered bool, err error) {
	ev, err := Get(ctx, d.DB, id)
	if err != nil {
		return false, err
	}
	return d.attemptUnlessSettled(ctx, ev)
}

// AttemptStored makes the delivery attempt of ev, an event the caller
// emitted and claimed with EmitClaimedAt (committed), without reading it
// back. Like AttemptClaimed, an event delivered meanwhile is not delivered
// twice (markDelivered only changes a pending event).
func (d *Deliverer) AttemptStored(ctx context.Context, ev *Stored) (delivered bool, err error) {
	return d.attemptUnlessSettled(ctx, ev)
}
