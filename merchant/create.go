package merchant

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

// reply is what a service call answers besides its result code.
type reply struct {
	InstanceID  string
	Info        []kg.InstanceInfo
	EncryptType string
}

// NewInstanceInput is a newInstance call.
type NewInstanceInput struct {
	OrderID     string
	OrderLineID string
	BusinessID  string
	TestFlag    bool
}

// CreateInput is what createTx needs. Order is nil when Query Order has not
// answered (yet).
type CreateInput struct {
	OrderID     string
	OrderLineID string
	BusinessID  string
	TestFlag    bool
	Order       *Order
	// DeliverAt is when the job delivering the instance.created event is due
	// (the caller tries an inline delivery before then). Zero → now.
	DeliverAt time.Time
	// ClaimUntil, when set, claims the first delivery attempt of the
	// instance.created event for the caller (handoff.EmitClaimedAt), leased
	// until then.
	ClaimUntil time.Time
}

// CreateResult is what createTx decided.
type CreateResult struct {
	InstanceID string
	Created    bool   // false: an earlier call (maybe on another replica) created it
	Phase      string // phase of the instance
	EventID    string // instance.created event, when emitted by this call
	// Event is that event as stored, when its first attempt was claimed
	// (CreateInput.ClaimUntil).
	Event *handoff.Stored
}

func lineKey(orderID, orderLineID string) string  { return "line|" + orderID + "|" + orderLineID }
func productKey(orderID, productID string) string { return "product|" + orderID + "|" + productID }

func lookupKey(ctx context.Context, q querier, key string) (string, error) {
	var id string
	err := q.QueryRow(ctx, `SELECT instance_id FROM merchant_instance_keys WHERE idem_key = $1`, key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errNotFound
	}
	if err != nil {
		return "", fmt.Errorf("lookup key: %w", err)
	}
	return id, nil
}

// createTx is the whole create path inside one transaction: it finds the
// instance of the idempotency keys or creates it, with its instance.created
// event (when the order is known) or its Query Order job (when not). It is
// safe to run concurrently, in several processes on one database: the primary
// key of merchant_instance_keys decides which call creates. It must only
// touch the database (it may be retried and batched with other creates).
func (m *Merchant) createTx(ctx context.Context, tx *db.Tx, now time.Time, in CreateInput) (CreateResult, error) {
	keys := make([]string, 0, 2)
	if in.Order != nil && in.Order.OnDemand() {
		keys = append(keys, productKey(in.OrderID, in.Order.ProductID))
	}
	keys = append(keys, lineKey(in.OrderID, in.OrderLineID))

	existing := func() (CreateResult, bool, error) {
		for _, k := range keys {
			id, err := lookupKey(ctx, tx, k)
			if errors.Is(err, errNotFound) {
				continue
			}
			if err != nil {
				return CreateResult{}, false, err
			}
			for _, k2 := range keys {
				if _, err := tx.Exec(ctx, `INSERT INTO merchant_instance_keys (idem_key, instance_id, created_at) VALUES ($1, $2, $3)
					ON CONFLICT (idem_key) DO NOTHING`, k2, id, now.UnixMilli()); err != nil {
					return CreateResult{}, false, fmt.Errorf("create: link key: %w", err)
				}
			}
			inst, err := loadInstance(ctx, tx, id)
			if err != nil {
				return CreateResult{}, false, fmt.Errorf("create: instance of key %s: %w", k, err)
			}
			return CreateResult{InstanceID: inst.ID, Phase: inst.Phase}, true, nil
		}
		return CreateResult{}, false, nil
	}
	// With the order line key alone, the claim below finds an existing
	// instance as well (ON CONFLICT, then existing()): no lookup first.
	if len(keys) > 1 {
		if r, ok, err := existing(); err != nil || ok {
			return r, err
		}
	}

	// instanceId = the first call's businessId (the documented
	// recommendation), or a UUID if that id is somehow taken.
	id := in.BusinessID
	if id == "" {
		id = newUUID(m.rand)
	} else {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM merchant_instances WHERE instance_id = $1`, id).Scan(&one)
		if err == nil {
			id = newUUID(m.rand)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return CreateResult{}, fmt.Errorf("create: check id: %w", err)
		}
	}
	// The order line key decides which call creates: it is the same for
	// every retry of the line, whether or not Query Order answered.
	line := keys[len(keys)-1]
	res, err := tx.Exec(ctx, `INSERT INTO merchant_instance_keys (idem_key, instance_id, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (idem_key) DO NOTHING`, line, id, now.UnixMilli())
	if err != nil {
		return CreateResult{}, fmt.Errorf("create: claim key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return CreateResult{}, fmt.Errorf("create: claim key: %w", err)
	} else if n == 0 {
		// A concurrent call (another goroutine or replica) committed first.
		if r, ok, err := existing(); err != nil || ok {
			return r, err
		}
		return CreateResult{}, fmt.Errorf("create: key %s claimed but not visible", line)
	}
	aliasOf := ""
	if len(keys) > 1 {
		// Pay-per-use: (orderId, productId) may already belong to an
		// instance created meanwhile for another line of the order; this
		// line then becomes an alias of it.
		res, err := tx.Exec(ctx, `INSERT INTO merchant_instance_keys (idem_key, instance_id, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (idem_key) DO NOTHING`, keys[0], id, now.UnixMilli())
		if err != nil {
			return CreateResult{}, fmt.Errorf("create: product key: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			if aliasOf, err = lookupKey(ctx, tx, keys[0]); err != nil {
				return CreateResult{}, fmt.Errorf("create: product key: %w", err)
			}
		}
	}
	if aliasOf != "" {
		o := in.Order
		if _, err := tx.Exec(ctx, `INSERT INTO merchant_instances (instance_id, order_id, order_line_id, business_id, test_flag, phase, status,
			alias_of, product_id, sku_code, charging_mode, order_json, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)`,
			id, in.OrderID, in.OrderLineID, in.BusinessID, b2i(in.TestFlag), PhaseReady, StatusNormal, aliasOf,
			o.ProductID, o.SkuCode, o.ChargingMode, string(o.Raw), now.UnixMilli()); err != nil {
			return CreateResult{}, fmt.Errorf("create: insert alias: %w", err)
		}
		target, err := loadInstance(ctx, tx, aliasOf)
		if err != nil {
			return CreateResult{}, fmt.Errorf("create: alias target: %w", err)
		}
		return CreateResult{InstanceID: target.ID, Phase: target.Phase}, nil
	}
	inst := &Instance{ID: id, OrderID: in.OrderID, OrderLineID: in.OrderLineID, BusinessID: in.BusinessID, TestFlag: in.TestFlag,
		Phase: PhaseAwaitingOrder, Status: StatusNormal}
	if in.Order != nil {
		inst.Phase = PhaseProvisioning
		inst.ProductID, inst.SkuCode, inst.ChargingMode, inst.Order = in.Order.ProductID, in.Order.SkuCode, in.Order.ChargingMode, in.Order.Raw
	}
	if _, err := tx.Exec(ctx, `INSERT INTO merchant_instances (instance_id, order_id, order_line_id, business_id, test_flag, phase, status,
		product_id, sku_code, charging_mode, order_json, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)`,
		id, in.OrderID, in.OrderLineID, in.BusinessID, b2i(in.TestFlag), inst.Phase, inst.Status,
		inst.ProductID, inst.SkuCode, inst.ChargingMode, string(inst.Order), now.UnixMilli()); err != nil {
		return CreateResult{}, fmt.Errorf("create: insert instance: %w", err)
	}
	out := CreateResult{InstanceID: id, Created: true, Phase: inst.Phase}
	if in.Order != nil {
		due := in.DeliverAt
		if due.IsZero() {
			due = now
		}
		ev := handoff.Event{Type: EventCreated, Subject: id, TestFlag: in.TestFlag, Data: instanceData(inst, nil)}
		if in.ClaimUntil.IsZero() {
			out.EventID, err = handoff.EmitAt(ctx, tx, now, ev, due)
		} else {
			out.Event, err = handoff.EmitClaimedAt(ctx, tx, now, ev, due, in.ClaimUntil)
			if err == nil {
				out.EventID = out.Event.ID
			}
		}
		if err != nil {
			return CreateResult{}, err
		}
	} else {
		if err := enqueueOrderJob(ctx, tx, now, orderJob{Purpose: purposeCreate, InstanceID: id, OrderID: in.OrderID, OrderLineID: in.OrderLineID, TestFlag: in.TestFlag}); err != nil {
			return CreateResult{}, err
		}
	}
	return out, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Event types the merchant emits.
const (
	EventCreated      = "instance.created"
	EventRenewed      = "instance.renewed"
	EventFrozen       = "instance.frozen"
	EventUnfrozen     = "instance.unfrozen"
	EventReleased     = "instance.released"
	EventUpgraded     = "instance.upgraded"
	EventChangeCheck  = "instance.change_check"
	EventOrderNotify  = "order.notified"
	EventUsageRecords = "instance.usage_recorded"
)

// NewInstance handles newInstance: idempotent on (orderId, orderLineId), and
// on (orderId, productId) for pay-per-use orders; answers within the budget
// (Config.Budget, or ctx's deadline if earlier)
// with 000000 when the vendor app completed provisioning in time, the
// create-instance code and message when it refused the create (phase failed,
// on every retry as well), otherwise kg.ErrInProgress with the instanceId
// while provisioning continues.
//
// The budget bounds the waits that may be cut short (Query Order, the inline
// hand-off), not the database work: a create whose transaction is still
// waiting when the budget ends finishes on a context of its own (at most
// createGrace longer) and then answers 000004, rather than 000005 with
// nothing stored.
func (m *Merchant) NewInstance(ctx context.Context, in NewInstanceInput) (*reply, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Budget)
	defer cancel()
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.Budget+createGrace)
	defer wcancel()

	// A retry of a known order line answers from the database alone.
	lk := &lookupItem{key: lineKey(in.OrderID, in.OrderLineID)}
	if err := m.lookups.Do(wctx, lk); err != nil {
		return nil, fmt.Errorf("lookup key: %w", err)
	}
	if lk.err == nil {
		return m.lineAnswer(wctx, lk.id, lk.phase, lk.aliasOf, lk.aliasPhase)
	} else if !errors.Is(lk.err, errNotFound) {
		return nil, lk.err
	}

	// Query Order gets at most half of the budget; when it fails the instance
	// is still created and a job keeps asking.
	octx, ocancel := context.WithTimeout(ctx, m.cfg.Budget/2)
	order, oerr := m.fetchOrder(octx, in.OrderID, in.OrderLineID, in.TestFlag)
	ocancel()
	if oerr != nil {
		m.log.Warn("query order failed; provisioning continues in the background", "orderId", in.OrderID, "orderLineId", in.OrderLineID, "err", oerr)
		order = nil
	}
	var res CreateResult
	var err error
	batched := order != nil && !order.OnDemand()
	if batched {
		// The common case, batched with concurrent creates (batch.go).
		it := &createItem{ctx: wctx, in: CreateInput{OrderID: in.OrderID, OrderLineID: in.OrderLineID, BusinessID: in.BusinessID,
			TestFlag: in.TestFlag, Order: order}}
		if c := nonceClaimFrom(wctx); c != nil && !c.stored && c.nonce != "" {
			it.claim = c
		}
		if err = m.creates.Do(wctx, it); err == nil {
			res, err = it.res, it.err
		}
	} else {
		err = m.createAlone(wctx, order, in, &res)
	}
	if err != nil {
		return nil, fmt.Errorf("newInstance: %w", err)
	}
	if res.Created {
		m.metrics.created.Inc()
	}
	if res.Event != nil && batched {
		// The event's job is due after the budget: deliver inline now, the
		// job runner need not be woken for it. When the app's answer made
		// the instance ready, the answer needs no read.
		ev, ready := res.Event, false
		if m.inline(ctx, ev.ID, func(actx context.Context, _ string) (bool, error) {
			return m.attemptCreated(actx, ev, order.ProductID, &ready)
		}) && ready {
			return &reply{InstanceID: res.InstanceID}, nil
		}
	} else if res.Event != nil {
		ev := res.Event
		m.inline(ctx, ev.ID, func(actx context.Context, _ string) (bool, error) { return m.deliver.AttemptStored(actx, ev) })
	} else if res.Created {
		m.wake() // the Query Order job is due now
	}
	// Out of budget, the instance is stored all the same: 000004 unless it
	// is ready.
	return m.createAnswer(wctx, res.InstanceID)
}

// createAlone is a create in a transaction of its own (pay-per-use orders,
// whose idempotency needs two keys, and orders Query Order did not give).
func (m *Merchant) createAlone(wctx context.Context, order *Order, in NewInstanceInput, out *CreateResult) error {
	var res CreateResult
	err := m.writeTx(wctx, func(tx *db.Tx) error {
		now := m.clock.Now()
		var err error
		// The inline attempt below is claimed in the create's own INSERT of
		// the event rather than by a statement or transaction of its own.
		res, err = m.createTx(wctx, tx, now, CreateInput{OrderID: in.OrderID, OrderLineID: in.OrderLineID, BusinessID: in.BusinessID,
			TestFlag: in.TestFlag, Order: order, DeliverAt: now.Add(m.cfg.Budget + time.Second), ClaimUntil: now.Add(m.deliver.Lease)})
		return err
	})
	*out = res
	return err
}

// createGrace is how long a create's database work may outlive its budget.
const createGrace = 10 * time.Second

func (m *Merchant) createAnswer(ctx context.Context, id string) (*reply, error) {
	// The phase alone (and the phase of the instance an alias duplicates),
	// in one query: not the whole row.
	var phase, aliasOf, aliasPhase string
	err := m.db.QueryRow(ctx, `SELECT i.phase, i.alias_of, COALESCE(a.phase, '') FROM merchant_instances i
		LEFT JOIN merchant_instances a ON i.alias_of <> '' AND a.instance_id = i.alias_of WHERE i.instance_id = $1`, id).Scan(&phase, &aliasOf, &aliasPhase)
	if errors.Is(err, sql.ErrNoRows) {
		err = errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("newInstance: load instance %s: %w", id, err)
	}
	return m.lineAnswer(ctx, id, phase, aliasOf, aliasPhase)
}

// lineAnswer is the answer to a create of an order line whose instance is
// id (in phase), or the instance it is an alias of (pay-per-use): 000000
// when ready, the refusal's code and message when failed (read now: only a
// failed instance costs this read), else 000004.
func (m *Merchant) lineAnswer(ctx context.Context, id, phase, aliasOf, aliasPhase string) (*reply, error) {
	if aliasOf != "" && aliasPhase != "" {
		id, phase = aliasOf, aliasPhase
	}
	if phase == PhaseFailed {
		var code, msg string
		err := m.db.QueryRow(ctx, `SELECT phase, failure_code, failure_msg FROM merchant_instances WHERE instance_id = $1`, id).Scan(&phase, &code, &msg)
		if err != nil {
			return &reply{InstanceID: id}, fmt.Errorf("newInstance: refusal of %s: %w", id, err)
		}
		if phase == PhaseFailed && code != "" {
			return &reply{InstanceID: id}, kg.NewResultError(code, msg)
		}
		// Completed (appInfo) since the phase was read: answer what is now.
	}
	return &reply{InstanceID: id}, phaseErr(phase)
}

func phaseErr(phase string) error {
	if phase == PhaseReady {
		return nil
	}
	return kg.ErrInProgress
}

// fetchOrder asks Query Order. For sandbox requests a failure falls back to a
// generated order, so dial tests never depend on the marketplace's mocks.
func (m *Merchant) fetchOrder(ctx context.Context, orderID, orderLineID string, test bool) (*Order, error) {
	o, err := m.orders.QueryOrder(ctx, orderID, orderLineID)
	m.metrics.queryOrder(err)
	if err != nil && test {
		m.log.Debug("sandbox: query order failed, using a generated order", "orderId", orderID, "err", err)
		return sandboxOrder(orderID, orderLineID), nil
	}
	return o, err
}

// Order jobs.
const (
	purposeCreate  = "create"
	purposeUpgrade = "upgrade"
	purposeNotify  = "notify"
)

type orderJob struct {
	Purpose     string `json:"purpose"`
	InstanceID  string `json:"instanceId,omitempty"`
	OpKey       string `json:"opKey,omitempty"`
	OrderID     string `json:"orderId"`
	OrderLineID string `json:"orderLineId,omitempty"`
	TestFlag    bool   `json:"testFlag,omitempty"`
}

func enqueueOrderJob(ctx context.Context, tx *db.Tx, now time.Time, j orderJob) error {
	payload, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("order job: %w", err)
	}
	key := "order:" + j.Purpose + ":" + j.InstanceID + ":" + j.OpKey
	if _, _, err := jobs.Enqueue(ctx, tx, now, jobs.New{Kind: JobOrder, Key: key, Payload: payload}); err != nil {
		return fmt.Errorf("order job: enqueue: %w", err)
	}
	return nil
}

// handleOrderJob fetches an order that was not available inline, then hands
// off.
func (m *Merchant) handleOrderJob(ctx context.Context, j *jobs.Job) error {
	var p orderJob
	if err := json.Unmarshal(j.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("order job: payload: %w", err))
	}
	done, err := m.orderJobDone(ctx, p)
	if err != nil || done {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	order, err := m.fetchOrder(fctx, p.OrderID, p.OrderLineID, p.TestFlag)
	if err != nil {
		return err
	}
	var eventID string
	err = m.db.Tx(ctx, func(tx *db.Tx) error {
		var err error
		eventID, err = m.applyOrderTx(ctx, tx, m.clock.Now(), p, order, m.clock.Now())
		return err
	})
	if err != nil {
		return err
	}
	if eventID != "" {
		m.wake()
	}
	return nil
}

func (m *Merchant) orderJobDone(ctx context.Context, p orderJob) (bool, error) {
	switch p.Purpose {
	case purposeCreate:
		inst, err := loadInstance(ctx, m.db, p.InstanceID)
		if errors.Is(err, errNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return inst.Phase != PhaseAwaitingOrder, nil
	case purposeUpgrade, purposeNotify:
		var state string
		err := m.db.QueryRow(ctx, `SELECT state FROM merchant_operations WHERE op_key = $1`, p.OpKey).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return state != opAwaitingOrder, nil
	}
	return false, jobs.Permanent(fmt.Errorf("order job: unknown purpose %q", p.Purpose))
}

// applyOrderTx records a fetched order and emits the event it was waiting
// for. It is idempotent: a second application finds nothing to do.
func (m *Merchant) applyOrderTx(ctx context.Context, tx *db.Tx, now time.Time, p orderJob, order *Order, due time.Time) (string, error) {
	switch p.Purpose {
	case purposeCreate:
		// Locked: a second run of the job (a lease lost to another replica)
		// waits, then finds the order applied.
		inst, err := lockInstance(ctx, tx, p.InstanceID)
		if errors.Is(err, errNotFound) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		if inst.Phase != PhaseAwaitingOrder {
			return "", nil
		}
		if order.OnDemand() {
			pk := productKey(inst.OrderID, order.ProductID)
			res, err := tx.Exec(ctx, `INSERT INTO merchant_instance_keys (idem_key, instance_id, created_at) VALUES ($1, $2, $3)
				ON CONFLICT (idem_key) DO NOTHING`, pk, inst.ID, now.UnixMilli())
			if err != nil {
				return "", fmt.Errorf("order job: product key: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				other, err := lookupKey(ctx, tx, pk)
				if err != nil {
					return "", err
				}
				if other != inst.ID {
					// Pay-per-use idempotency on (orderId, productId): this
					// line duplicates an existing instance; it becomes an alias.
					_, err := tx.Exec(ctx, `UPDATE merchant_instances SET alias_of = $2, phase = $3, product_id = $4, sku_code = $5,
						charging_mode = $6, order_json = $7, updated_at = $8 WHERE instance_id = $1`,
						inst.ID, other, PhaseReady, order.ProductID, order.SkuCode, order.ChargingMode, string(order.Raw), now.UnixMilli())
					return "", err
				}
			}
		}
		inst.Phase, inst.ProductID, inst.SkuCode, inst.ChargingMode, inst.Order = PhaseProvisioning, order.ProductID, order.SkuCode, order.ChargingMode, order.Raw
		if _, err := tx.Exec(ctx, `UPDATE merchant_instances SET phase = $2, product_id = $3, sku_code = $4, charging_mode = $5,
			order_json = $6, updated_at = $7 WHERE instance_id = $1`,
			inst.ID, inst.Phase, inst.ProductID, inst.SkuCode, inst.ChargingMode, string(order.Raw), now.UnixMilli()); err != nil {
			return "", fmt.Errorf("order job: update instance: %w", err)
		}
		return handoff.EmitAt(ctx, tx, now, handoff.Event{Type: EventCreated, Subject: inst.ID, TestFlag: inst.TestFlag, Data: instanceData(inst, nil)}, due)
	case purposeUpgrade:
		return m.applyUpgradeTx(ctx, tx, now, p, order, due)
	case purposeNotify:
		return m.applyNotifyTx(ctx, tx, now, p, order, due)
	}
	return "", fmt.Errorf("order job: unknown purpose %q", p.Purpose)
}
