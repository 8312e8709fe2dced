package market

// Hooks for components built on the market (seller tools, buyer center) that
// run inside the market process. Added by the seller-tools engineer as a new
// file so as not to edit the core's files; see docs/market.md "Seller tools".

import (
	"context"
	"fmt"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/jobs"
)

// AddJobHandlers registers job handlers of another component with the
// market's job runner, so that Run, RunDue and Advance (the virtual clock)
// also run those jobs. Call it once at wiring time, before Run, RunDue, Wake
// or Advance are first used: the runner reads its handler set on first use.
// A kind already handled is an error.
func (m *Market) AddJobHandlers(handlers map[string]jobs.Handler) error {
	merged := make(map[string]jobs.Handler, len(m.runner.Handlers)+len(handlers))
	for k, h := range m.runner.Handlers {
		merged[k] = h
	}
	for k, h := range handlers {
		if _, dup := merged[k]; dup {
			return fmt.Errorf("market: job kind %q already has a handler", k)
		}
		if h == nil {
			return fmt.Errorf("market: job kind %q: nil handler", k)
		}
		merged[k] = h
	}
	old := m.runner
	m.runner = &jobs.Runner{
		DB: old.DB, Clock: old.Clock, Logger: old.Logger, Handlers: merged,
		Workers: old.Workers, Poll: old.Poll, Lease: old.Lease, Backoff: old.Backoff, MaxAttempts: old.MaxAttempts,
	}
	return nil
}

// SellerKey returns the secret of a seller's access key of one type (basic,
// kit, license, general): the key the market signs production-interface calls
// with. A missing key is a refused *Error.
func (m *Market) SellerKey(ctx context.Context, sellerID, keyType string) (string, error) {
	return m.accessKey(ctx, sellerID, keyType)
}

// WireClock returns the clock that stamps outgoing signatures.
func (m *Market) WireClock() clock.Clock { return m.wire }
