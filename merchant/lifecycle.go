package merchant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

// Operation states (merchant_operations.state).
const (
	opAwaitingOrder = "awaiting_order"
	opDone          = "done"
)

// errNoInstance names the id in the message.
func errNoInstance(id string) error {
	return kg.NewResultError(kg.CodeNoInstance, "instance "+id+" does not exist")
}

// sandboxOnly refuses a debugging request (testFlag "1") that names a real
// instance: debug cases and the dial tests that replay them twice a day act on
// sandbox data only and never reach a real tenant (policy 6). From the
// sandbox's side the real instance does not exist (000003), so a debug case
// typed with a real instanceId fails in the seller console instead of being
// saved, and replayed, against a paying customer.
func sandboxOnly(inst *Instance, test bool, id string) error {
	if test && !inst.TestFlag {
		return kg.NewResultError(kg.CodeNoInstance, "instance "+id+` is not a debugging instance: a testFlag "1" request acts only on instances a testFlag "1" newInstance created`)
	}
	return nil
}

// activeInstance loads the instance a call acts on (unknown → 000003; the
// one an alias duplicates), locked until tx ends (lockInstance): the
// read-modify-write of a call repeated on two replicas at once runs one after
// the other.
func activeInstance(ctx context.Context, tx *db.Tx, id string) (*Instance, error) {
	inst, err := lockInstance(ctx, tx, id)
	if errors.Is(err, errNotFound) {
		return nil, errNoInstance(id)
	}
	if err != nil {
		return nil, err
	}
	if inst.AliasOf != "" {
		c, err := lockInstance(ctx, tx, inst.AliasOf)
		if err != nil {
			return nil, fmt.Errorf("instance %s: alias of %s: %w", id, inst.AliasOf, err)
		}
		inst = c
	}
	return inst, nil
}

// callInstance loads the instance a lifecycle call from KooGallery names
// (activeInstance) and refuses a real one to a debugging call (sandboxOnly).
// A released sandbox instance comes back to life here, and only here: not for
// the vendor app's appInfo, refusal or usage.
func callInstance(ctx context.Context, tx *db.Tx, id string, test bool) (*Instance, error) {
	inst, err := activeInstance(ctx, tx, id)
	if err == nil {
		err = sandboxOnly(inst, test, id)
	}
	if err != nil {
		return nil, err
	}
	if inst.TestFlag && inst.Status == StatusReleased {
		// Dial tests replay the saved debug cases (create → query → refresh →
		// freeze → unfreeze → release) twice a day, forever, against the same
		// sandbox instance: a released sandbox instance comes back for the next
		// lifecycle call instead of answering 000003 (policy 6). Real instances
		// stay released.
		if _, err := tx.Exec(ctx, `UPDATE merchant_instances SET status = $2 WHERE instance_id = $1`, inst.ID, StatusNormal); err != nil {
			return nil, fmt.Errorf("instance %s: revive sandbox instance: %w", inst.ID, err)
		}
		inst.Status = StatusNormal
	}
	return inst, nil
}

// liveInstance is callInstance for a call that acts on an unreleased
// instance: a released one is 000003.
func liveInstance(ctx context.Context, tx *db.Tx, id string, test bool) (*Instance, error) {
	inst, err := callInstance(ctx, tx, id, test)
	if err != nil {
		return nil, err
	}
	if inst.Status == StatusReleased {
		return nil, kg.NewResultError(kg.CodeNoInstance, "instance "+id+" is released")
	}
	return inst, nil
}

// insertOp records an idempotent operation; inserted=false when the key was
// seen before (a retry).
func insertOp(ctx context.Context, tx *db.Tx, now time.Time, key, activity, instanceID, orderID, orderLineID string, test bool, state string, request any) (bool, error) {
	req, err := json.Marshal(request)
	if err != nil {
		return false, fmt.Errorf("operation %s: %w", key, err)
	}
	res, err := tx.Exec(ctx, `INSERT INTO merchant_operations (op_key, activity, instance_id, order_id, order_line_id, test_flag, state, request, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT (op_key) DO NOTHING`,
		key, activity, instanceID, orderID, orderLineID, b2i(test), state, string(req), now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("operation %s: %w", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("operation %s: %w", key, err)
	}
	return n > 0, nil
}

// RefreshInput is a refreshInstance call.
type RefreshInput struct {
	InstanceID  string
	OrderID     string
	OrderLineID string
	Scene       string // TRIAL_TO_FORMAL, RENEWAL, UNSUBSCRIBE_RENEWAL_PERIOD, RENEWAL_CHANGE, or any other
	ProductID   string
	Expire      time.Time // absolute new expiry (kg parses the 14- or 17-digit expireTime)
	TestFlag    bool
}

// Refresh sets the instance's absolute expiry. Idempotent on (orderId,
// orderLineId, scene): a retry changes nothing and emits nothing.
func (m *Merchant) Refresh(ctx context.Context, in RefreshInput) (*reply, error) {
	expire := in.Expire.UTC()
	key := "refresh|" + in.OrderID + "|" + in.OrderLineID + "|" + in.Scene
	renewOrder := m.renewalOrder(ctx, key, in)
	err := m.writeTx(ctx, func(tx *db.Tx) error {
		now := m.clock.Now()
		inst, err := liveInstance(ctx, tx, in.InstanceID, in.TestFlag)
		if err != nil {
			return err
		}
		fresh, err := insertOp(ctx, tx, now, key, "refreshInstance", inst.ID, in.OrderID, in.OrderLineID, in.TestFlag, opDone, in)
		if err != nil {
			return err
		}
		changed := !inst.ExpireAt.Equal(expire) || (in.ProductID != "" && in.ProductID != inst.ProductID)
		if !fresh && !changed {
			return nil
		}
		inst.ExpireAt = expire
		extra := map[string]any{"scene": in.Scene, "renewOrderId": in.OrderID, "renewOrderLineId": in.OrderLineID}
		if renewOrder != nil && fresh {
			// A renewal with a spec change (or a trial turned paid): the
			// renewal order carries the new product and specification.
			if renewOrder.ProductID != "" {
				inst.ProductID = renewOrder.ProductID
			}
			if renewOrder.SkuCode != "" {
				inst.SkuCode = renewOrder.SkuCode
			}
			extra["renewOrder"] = renewOrder.Raw
		}
		if in.ProductID != "" {
			inst.ProductID = in.ProductID
		}
		if _, err := tx.Exec(ctx, `UPDATE merchant_instances SET expire_at = $2, product_id = $3, sku_code = $4, updated_at = $5 WHERE instance_id = $1`,
			inst.ID, expire.UnixMilli(), inst.ProductID, inst.SkuCode, now.UnixMilli()); err != nil {
			return fmt.Errorf("refresh: %w", err)
		}
		_, err = handoff.Emit(ctx, tx, now, handoff.Event{Type: EventRenewed, Subject: inst.ID, TestFlag: inst.TestFlag,
			Data: instanceData(inst, extra)})
		return err
	})
	if err != nil {
		return nil, err
	}
	m.wake()
	return &reply{}, nil
}

// renewalOrder fetches, within half the budget, the order of a first
// RENEWAL_CHANGE or TRIAL_TO_FORMAL refresh (its line has the new
// specification). Nil when not needed or unavailable: the refresh itself never
// waits on the marketplace.
func (m *Merchant) renewalOrder(ctx context.Context, opKey string, in RefreshInput) *Order {
	if in.Scene != kg.SceneRenewalChange && in.Scene != kg.SceneTrialToFormal {
		return nil
	}
	var one int
	if err := m.db.QueryRow(ctx, `SELECT 1 FROM merchant_operations WHERE op_key = $1`, opKey).Scan(&one); err == nil {
		return nil // a retry: already applied
	}
	fctx, cancel := context.WithTimeout(ctx, m.cfg.Budget/2)
	defer cancel()
	o, err := m.orders.QueryOrder(fctx, in.OrderID, in.OrderLineID)
	m.metrics.queryOrder(err)
	if err != nil {
		m.log.Warn("refresh: renewal order not available; the event goes without it", "orderId", in.OrderID, "scene", in.Scene, "err", err)
		return nil
	}
	return o
}

// UpdateStatus freezes or unfreezes an instance. A repeat is harmless; data
// is kept while frozen.
func (m *Merchant) UpdateStatus(ctx context.Context, instanceID, status string, test bool) (*reply, error) {
	var target, evType string
	switch strings.ToUpper(status) {
	case "FREEZE":
		target, evType = StatusFrozen, EventFrozen
	case "UNFREEZE":
		target, evType = StatusNormal, EventUnfrozen
	default:
		return nil, &kg.FieldError{Field: "status", Reason: "must be FREEZE or UNFREEZE"}
	}
	err := m.writeTx(ctx, func(tx *db.Tx) error {
		now := m.clock.Now()
		inst, err := liveInstance(ctx, tx, instanceID, test)
		if err != nil {
			return err
		}
		if inst.Status == target {
			return nil
		}
		inst.Status = target
		if _, err := tx.Exec(ctx, `UPDATE merchant_instances SET status = $2, updated_at = $3 WHERE instance_id = $1`, inst.ID, target, now.UnixMilli()); err != nil {
			return fmt.Errorf("updateInstanceStatus: %w", err)
		}
		_, err = handoff.Emit(ctx, tx, now, handoff.Event{Type: evType, Subject: inst.ID, TestFlag: inst.TestFlag, Data: instanceData(inst, nil)})
		return err
	})
	if err != nil {
		return nil, err
	}
	m.wake()
	return &reply{}, nil
}

// Release releases an instance: a repeat is a success; unknown → 000003. The
// row is kept (status RELEASED) for audit.
func (m *Merchant) Release(ctx context.Context, instanceID, orderID, orderLineID string, test bool) (*reply, error) {
	err := m.writeTx(ctx, func(tx *db.Tx) error {
		now := m.clock.Now()
		inst, err := callInstance(ctx, tx, instanceID, test)
		if err != nil {
			return err
		}
		if inst.Status == StatusReleased {
			return nil
		}
		inst.Status = StatusReleased
		if _, err := tx.Exec(ctx, `UPDATE merchant_instances SET status = $2, released_at = $3, updated_at = $3 WHERE instance_id = $1`,
			inst.ID, StatusReleased, now.UnixMilli()); err != nil {
			return fmt.Errorf("releaseInstance: %w", err)
		}
		_, err = handoff.Emit(ctx, tx, now, handoff.Event{Type: EventReleased, Subject: inst.ID, TestFlag: inst.TestFlag,
			Data: instanceData(inst, map[string]any{"releaseOrderId": orderID, "releaseOrderLineId": orderLineID})})
		return err
	})
	if err != nil {
		return nil, err
	}
	m.wake()
	return &reply{}, nil
}

// Upgrade records an upgrade order (idempotent on orderId), fetches it and
// emits instance.upgraded. When Query Order is unavailable the upgrade is
// still accepted and a job completes it.
func (m *Merchant) Upgrade(ctx context.Context, instanceID, orderID, orderLineID string, test bool) (*reply, error) {
	key := "upgrade|" + orderID
	var fresh bool
	var inst *Instance
	err := m.writeTx(ctx, func(tx *db.Tx) error {
		now := m.clock.Now()
		var err error
		inst, err = liveInstance(ctx, tx, instanceID, test)
		if err != nil {
			return err
		}
		fresh, err = insertOp(ctx, tx, now, key, "upgradeInstance", inst.ID, orderID, orderLineID, test, opAwaitingOrder,
			map[string]any{"instanceId": instanceID, "orderId": orderID, "orderLineId": orderLineID})
		if err != nil || !fresh {
			return err
		}
		return enqueueOrderJob(ctx, tx, now, orderJob{Purpose: purposeUpgrade, InstanceID: inst.ID, OpKey: key, OrderID: orderID, OrderLineID: orderLineID, TestFlag: test})
	})
	if err != nil || !fresh {
		return &reply{}, err
	}
	m.wake()
	m.fetchInline(ctx, orderJob{Purpose: purposeUpgrade, InstanceID: inst.ID, OpKey: key, OrderID: orderID, OrderLineID: orderLineID, TestFlag: test})
	return &reply{}, nil
}

// fetchInline tries, within the budget, what the order job would do.
func (m *Merchant) fetchInline(ctx context.Context, p orderJob) {
	fctx, cancel := context.WithTimeout(ctx, m.cfg.Budget/2)
	defer cancel()
	order, err := m.fetchOrder(fctx, p.OrderID, p.OrderLineID, p.TestFlag)
	if err != nil {
		m.log.Warn("query order failed; a job will retry", "purpose", p.Purpose, "orderId", p.OrderID, "err", err)
		return
	}
	err = m.writeTx(context.WithoutCancel(ctx), func(tx *db.Tx) error {
		_, err := m.applyOrderTx(ctx, tx, m.clock.Now(), p, order, m.clock.Now())
		return err
	})
	if err != nil {
		m.log.Error("apply fetched order; a job will retry", "purpose", p.Purpose, "orderId", p.OrderID, "err", err)
		return
	}
	m.wake()
}

func (m *Merchant) applyUpgradeTx(ctx context.Context, tx *db.Tx, now time.Time, p orderJob, order *Order, due time.Time) (string, error) {
	res, err := tx.Exec(ctx, `UPDATE merchant_operations SET state = $2, order_json = $3, updated_at = $4 WHERE op_key = $1 AND state = $5`,
		p.OpKey, opDone, string(order.Raw), now.UnixMilli(), opAwaitingOrder)
	if err != nil {
		return "", fmt.Errorf("upgrade: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return "", nil
	}
	inst, err := activeInstance(ctx, tx, p.InstanceID)
	if err != nil {
		return "", err
	}
	from := map[string]any{"productId": inst.ProductID, "skuCode": inst.SkuCode}
	if order.ProductID != "" {
		inst.ProductID = order.ProductID
	}
	if order.SkuCode != "" {
		inst.SkuCode = order.SkuCode
	}
	if _, err := tx.Exec(ctx, `UPDATE merchant_instances SET product_id = $2, sku_code = $3, updated_at = $4 WHERE instance_id = $1`,
		inst.ID, inst.ProductID, inst.SkuCode, now.UnixMilli()); err != nil {
		return "", fmt.Errorf("upgrade: %w", err)
	}
	return handoff.EmitAt(ctx, tx, now, handoff.Event{Type: EventUpgraded, Subject: inst.ID, TestFlag: inst.TestFlag,
		Data: instanceData(inst, map[string]any{"upgradeOrderId": p.OrderID, "upgradeOrderLineId": p.OrderLineID, "upgradeOrder": order.Raw, "from": from})}, due)
}

// OrderNotify records an order notification (idempotent on orderId +
// orderLineId), fetches the order and emits order.notified.
func (m *Merchant) OrderNotify(ctx context.Context, orderID, orderLineID string, test bool) (*reply, error) {
	key := "notify|" + orderID + "|" + orderLineID
	var fresh bool
	p := orderJob{Purpose: purposeNotify, OpKey: key, OrderID: orderID, OrderLineID: orderLineID, TestFlag: test}
	err := m.writeTx(ctx, func(tx *db.Tx) error {
		now := m.clock.Now()
		var err error
		fresh, err = insertOp(ctx, tx, now, key, "orderNotify", "", orderID, orderLineID, test, opAwaitingOrder,
			map[string]any{"orderId": orderID, "orderLineId": orderLineID})
		if err != nil || !fresh {
			return err
		}
		return enqueueOrderJob(ctx, tx, now, p)
	})
	if err != nil || !fresh {
		return &reply{}, err
	}
	m.wake()
	m.fetchInline(ctx, p)
	return &reply{}, nil
}

func (m *Merchant) applyNotifyTx(ctx context.Context, tx *db.Tx, now time.Time, p orderJob, order *Order, due time.Time) (string, error) {
	res, err := tx.Exec(ctx, `UPDATE merchant_operations SET state = $2, order_json = $3, updated_at = $4 WHERE op_key = $1 AND state = $5`,
		p.OpKey, opDone, string(order.Raw), now.UnixMilli(), opAwaitingOrder)
	if err != nil {
		return "", fmt.Errorf("orderNotify: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return "", nil
	}
	return handoff.EmitAt(ctx, tx, now, handoff.Event{Type: EventOrderNotify, Subject: p.OrderID, TestFlag: p.TestFlag,
		Data: map[string]any{"orderId": p.OrderID, "orderLineId": p.OrderLineID, "testFlag": p.TestFlag, "order": order.Raw,
			"orderType": order.OrderType, "chargingMode": order.ChargingMode, "productId": order.ProductID, "skuCode": order.SkuCode}}, due)
}

// ChangeCheck asks the vendor app, within the budget, whether the instance
// can change to the target product. The question is an instance.change_check
// event (so it is recorded and audited like every other); its synchronous
// answer decides: allowed → 000000, refused → the app's code when it is a
// refusal code (refusalCode), else 000100; no answer in time → 000005.
func (m *Merchant) ChangeCheck(ctx context.Context, instanceID string, productInfo json.RawMessage, test bool) (*reply, error) {
	// The budget bounds the wait for the vendor app, not the write.
	bctx, cancel := context.WithTimeout(ctx, m.cfg.Budget)
	defer cancel()
	var (
		ev  *handoff.Stored
		key string
	)
	err := m.writeTx(ctx, func(tx *db.Tx) error {
		now := m.clock.Now()
		inst, err := liveInstance(ctx, tx, instanceID, test)
		if err != nil {
			return err
		}
		key = "check|" + newUUID(m.rand)
		if _, err := insertOp(ctx, tx, now, key, "changeInstanceCheck", inst.ID, "", "", test, opAwaitingOrder,
			map[string]any{"instanceId": instanceID, "productInfo": productInfo}); err != nil {
			return err
		}
		// Emitted with this request's claim on its first attempt, as a
		// create's event is: the event's job on another replica (whose clock
		// may run ahead of this one's) cannot take the question from under
		// the request waiting for the verdict.
		ev, err = handoff.EmitClaimedAt(ctx, tx, now, handoff.Event{Type: EventChangeCheck, Subject: inst.ID, TestFlag: inst.TestFlag,
			Data: instanceData(inst, map[string]any{"checkId": key, "productInfo": productInfo})}, now.Add(m.cfg.Budget+time.Second), now.Add(m.deliver.Lease))
		return err
	})
	if err != nil {
		return nil, err
	}
	m.wake() // the event's job, should the inline attempt fail
	if !m.inline(bctx, ev.ID, func(actx context.Context, _ string) (bool, error) { return m.deliver.AttemptStored(actx, ev) }) {
		// Not delivered: no answer within the budget, or a failed attempt
		// (a non-2xx answer, an unreachable app), whose reason is the
		// event's lastError. Either way KooGallery gets no verdict.
		return nil, kg.NewResultError(kg.CodeInternal, "the vendor application gave no verdict on the change check (no answer in time, or its webhook failed)")
	}
	var result string
	if err := m.db.QueryRow(context.WithoutCancel(ctx), `SELECT result FROM merchant_operations WHERE op_key = $1`, key).Scan(&result); err != nil {
		return nil, fmt.Errorf("changeInstanceCheck: read verdict: %w", err)
	}
	if result == "" {
		return &reply{}, nil // delivered to nobody, or an empty answer: no objection
	}
	var v Answer
	if err := json.Unmarshal([]byte(result), &v); err != nil {
		return nil, fmt.Errorf("changeInstanceCheck: stored verdict: %w", err)
	}
	code := strings.TrimSpace(v.ResultCode)
	// "allowed" decides when given. Without it, a resultCode other than
	// 000000 refuses: an app that answers a change check as it refuses a
	// create ({"resultCode":"000106"}) must not let the change through.
	refused := code != "" && code != kg.CodeSuccess
	if v.Allowed != nil {
		refused = !*v.Allowed
	}
	if !refused {
		return &reply{}, nil
	}
	if !refusalCode(code) {
		if code != "" {
			m.log.Warn("change check: the vendor app refused with a resultCode that is not a refusal code (0001xx); answering 000100",
				"instanceId", instanceID, "resultCode", fmt.Sprintf("%.32q", code))
		}
		code = kg.CodeNoResource
	}
	return nil, kg.NewResultError(code, truncateRunes(strings.TrimSpace(v.ResultMsg), maxVerdictMsg))
}

// maxVerdictMsg bounds the app's resultMsg: KooGallery's resultMsg is at most
// 255 characters (saas-v2.md §4).
const maxVerdictMsg = 255

// refusalCode reports whether the vendor app's resultCode may refuse a change
// check: six digits 0001xx, the module-specific codes (000100 no resource …
// 000107, and the rest of that range for codes documented later). 000000 is
// success, and 000001–000005 are the common codes of souk's own handling
// (authentication, parameters, instance, in progress, internal error): none of
// them says the change is refused, and anything else is not a SaaS code. An
// answer with any other code is answered with the default 000100, so the
// code that reaches KooGallery, the audit log and the metrics is always one of
// a hundred known values.
func refusalCode(code string) bool {
	if len(code) != 6 || code[:4] != "0001" {
		return false
	}
	return code[4] >= '0' && code[4] <= '9' && code[5] >= '0' && code[5] <= '9'
}

// recordVerdictTx stores the app's answer to a change check, bounded: the
// verdict, resultCode (at most 64 characters, enough to name a bad one) and
// resultMsg (at most maxVerdictMsg characters).
func recordVerdictTx(ctx context.Context, tx *db.Tx, now time.Time, checkID string, a *Answer) error {
	a = &Answer{Allowed: a.Allowed, ResultCode: truncateRunes(a.ResultCode, 64), ResultMsg: truncateRunes(a.ResultMsg, maxVerdictMsg)}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE merchant_operations SET state = $2, result = $3, updated_at = $4 WHERE op_key = $1`, checkID, opDone, string(b), now.UnixMilli())
	return err
}
