package market

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/jobs"
)

func TestInterruptedCallIsFailedAtStart(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		_, sub := e.buy(BuyInput{CustomerID: "cust-1", ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		body := []byte(`{"activity":"queryInstance","instanceId":"` + sub.InstanceID + `"}`)
		e.fm.setFail("queryInstance", "hang")
		// A synchronous call whose process "dies" mid-call: its context ends
		// before the answer is recorded.
		ctx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
		_, _ = e.m.Call(ctx, Outbound{SellerID: e.seller, Activity: "queryInstance", URL: e.fmURL, Body: body})
		cancel()
		var id int64
		var state string
		e.must(e.db.QueryRow(e.ctx, `SELECT id, state FROM market_messages WHERE activity = 'queryInstance' ORDER BY id DESC LIMIT 1`).Scan(&id, &state))
		if state != "sending" {
			t.Fatalf("state %s, want sending (the call was cut off)", state)
		}
		// Within the call timeout another replica may still be waiting for the answer.
		if n, err := e.m.RecoverInterruptedCalls(e.ctx); err != nil || n != 0 {
			t.Fatalf("recover within the timeout: %d %v", n, err)
		}
		e.clk.Advance(10 * time.Second)
		if n, err := e.m.RecoverInterruptedCalls(e.ctx); err != nil || n != 1 {
			t.Fatalf("recover: %d %v", n, err)
		}
		msg, err := e.m.GetMessage(e.ctx, id, true)
		e.must(err)
		if msg.State != "failed" || !strings.Contains(msg.LastError, "interrupted") || len(msg.AttemptLog) != 1 || msg.AttemptLog[0].Error != InterruptedCallError {
			t.Fatalf("recovered message %+v", msg)
		}
		if n, err := e.m.RecoverInterruptedCalls(e.ctx); err != nil || n != 0 {
			t.Fatalf("second recover: %d %v", n, err)
		}
		// Restartable.
		e.fm.setFail("queryInstance", "")
		if _, err := e.m.Restart(e.ctx, id); err != nil {
			t.Fatal(err)
		}
		e.settle()
		msg, err = e.m.GetMessage(e.ctx, id, true)
		e.must(err)
		if msg.State != "succeeded" || msg.Attempts != 2 {
			t.Fatalf("restarted message %s after %d attempts: %s", msg.State, msg.Attempts, msg.LastError)
		}
	})
}

func TestAdvanceIgnoresForeignJobs(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.must(e.db.Tx(e.ctx, func(tx *db.Tx) error {
			_, _, err := jobs.Enqueue(e.ctx, tx, e.clk.Now(), jobs.New{Kind: "someone-else.job", DueAt: e.clk.Now().Add(time.Hour)})
			return err
		}))
		start := time.Now()
		res, err := e.m.Advance(e.ctx, 3*time.Hour)
		if err != nil {
			t.Fatalf("advance over a foreign job: %v", err)
		}
		if !res.To.Equal(t0.Add(3*time.Hour)) || time.Since(start) > 5*time.Second {
			t.Fatalf("advance to %s in %s", res.To, time.Since(start))
		}
		next, ok, err := e.m.runner.NextDue(e.ctx)
		e.must(err)
		if ok {
			t.Errorf("runner's next due %s: a foreign job counted", next)
		}
	})
}

// A call under way when the market stops is finished and recorded before
// Run returns: the merchant's answer is kept and the call is not made again.
func TestStopFinishesTheCallInFlight(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		e.fm.setFail("newInstance", "slow")
		o, err := e.m.Buy(e.ctx, BuyInput{CustomerID: e.customer.ID, ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.must(err)
		ctx, cancel := context.WithCancel(e.ctx)
		runDone := make(chan error, 1)
		go func() { runDone <- e.m.Run(ctx) }()
		for deadline := time.Now().Add(10 * time.Second); len(e.fm.received("newInstance")) == 0; {
			if time.Now().After(deadline) {
				cancel()
				t.Fatal("the runner never called the merchant")
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-runDone; err != nil {
			t.Fatal(err)
		}
		msgs, err := e.m.ListMessages(e.ctx, MessageFilter{OrderID: o.OrderID, Activity: "newInstance"})
		e.must(err)
		if len(msgs) != 1 || msgs[0].State != "succeeded" || msgs[0].Attempts != 1 {
			t.Fatalf("message after the stop = %+v", msgs)
		}
		var leased int
		e.must(e.db.QueryRow(e.ctx, `SELECT COUNT(*) FROM jobs WHERE locked_by IS NOT NULL`).Scan(&leased))
		if leased != 0 {
			t.Fatalf("%d jobs still leased after the stop", leased)
		}
		if s := e.sub(o.SubscriptionID); s.Status != SubActive {
			t.Fatalf("subscription after the stop = %+v", s)
		}
		e.settle()
		if n := len(e.fm.received("newInstance")); n != 1 {
			t.Fatalf("the merchant got %d newInstance calls", n)
		}
	})
}
