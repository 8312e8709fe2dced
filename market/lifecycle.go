package market

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/kg"
)

// UnsubscribeWindow is KooGallery's no-reason full-refund window ("5天无理由全额退订").
const UnsubscribeWindow = 5 * 24 * time.Hour

// UnsubscribeYearlyLimit is how many no-reason unsubscriptions an account may
// make per natural year, counted from 1 January (Beijing time).
const UnsubscribeYearlyLimit = 10

// beijing is the zone of KooGallery's natural year.
var beijing = time.FixedZone("UTC+8", 8*3600)

type timerPayload struct {
	Sub    string `json:"s"`
	Expire int64  `json:"t"` // the expire_at the timer was set for; a renewal makes it stale
}

func (m *Market) scheduleExpiry(ctx context.Context, tx *db.Tx, now time.Time, subID string, expire time.Time) error {
	if expire.IsZero() {
		return nil
	}
	p, _ := json.Marshal(timerPayload{Sub: subID, Expire: db.Millis(expire)})
	_, _, err := jobs.Enqueue(ctx, tx, now, jobs.New{Kind: JobExpire, Key: "expire:" + subID + ":" + strconv.FormatInt(db.Millis(expire), 10),
		Payload: p, DueAt: expire})
	if err != nil {
		return fmt.Errorf("market: schedule expiry: %w", err)
	}
	return nil
}

// subBody builds a lifecycle body for a subscription's instance.
func subBody(s Subscription, activity string, kv ...string) []byte {
	return activityBody(activity, s.TestFlag, append([]string{"instanceId", s.InstanceID}, kv...)...)
}

func (m *Market) subURL(ctx context.Context, s Subscription) (Product, string, error) {
	p, err := m.GetProduct(ctx, s.ProductID)
	if err != nil {
		return Product{}, "", err
	}
	u, err := m.productURL(ctx, p)
	return p, u, err
}

// timerTarget reads a lifecycle timer's payload and the product and
// production address of its subscription; a timer whose payload is broken or
// whose subscription is gone is dead for good.
func (m *Market) timerTarget(ctx context.Context, j *jobs.Job) (timerPayload, Product, string, error) {
	var p timerPayload
	if err := json.Unmarshal(j.Payload, &p); err != nil {
		return p, Product{}, "", jobs.Permanent(fmt.Errorf("market: %s payload: %w", j.Kind, err))
	}
	sub, err := m.GetSubscription(ctx, p.Sub)
	if err != nil {
		if IsNotFound(err) {
			return p, Product{}, "", jobs.Permanent(err)
		}
		return p, Product{}, "", err
	}
	prod, url, err := m.subURL(ctx, sub)
	return p, prod, url, err
}

// handleExpire freezes a subscription whose period ran out:
// updateInstanceStatus FREEZE now, releaseInstance after the retention period.
func (m *Market) handleExpire(ctx context.Context, j *jobs.Job) error {
	p, prod, url, err := m.timerTarget(ctx, j)
	if err != nil {
		return err
	}
	return m.db.Tx(ctx, func(tx *db.Tx) error {
		now := m.clock.Now()
		s, err := lockSub(ctx, tx, p.Sub, now)
		if err != nil {
			return err
		}
		if (s.Status != SubActive && s.Status != SubFrozen) || db.Millis(s.ExpireAt) != p.Expire {
			return nil // renewed, released or unsubscribed meanwhile
		}
		releaseAt := s.ExpireAt.Add(m.retentionOf(prod))
		if s.Status == SubFrozen {
			// Frozen by the admin (arrears, violation) before it expired: it
			// stays frozen (the merchant already has FREEZE) and is released
			// when the retention period after the expiry ends (§4.5).
			if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET release_at = $1 WHERE id = $2`, db.Millis(releaseAt), s.ID); err != nil {
				return err
			}
		} else {
			if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET status = $1, frozen_at = $2, release_at = $3 WHERE id = $4`,
				SubFrozen, db.Millis(now), db.Millis(releaseAt), s.ID); err != nil {
				return err
			}
			if _, err := m.enqueue(ctx, tx, now, Outbound{SellerID: s.SellerID, SubscriptionID: s.ID, Activity: "updateInstanceStatus", URL: url,
				Body: subBody(s, "updateInstanceStatus", "status", "FREEZE"), Effect: Effect{Kind: "status", SubscriptionID: s.ID}}); err != nil {
				return err
			}
		}
		pl, _ := json.Marshal(timerPayload{Sub: s.ID, Expire: p.Expire})
		_, _, err = jobs.Enqueue(ctx, tx, now, jobs.New{Kind: JobRelease, Key: "release:" + s.ID + ":" + strconv.FormatInt(p.Expire, 10),
			Payload: pl, DueAt: releaseAt})
		return err
	})
}

// handleRelease releases a subscription still frozen when its retention
// period ends.
func (m *Market) handleRelease(ctx context.Context, j *jobs.Job) error {
	p, _, url, err := m.timerTarget(ctx, j)
	if err != nil {
		return err
	}
	return m.db.Tx(ctx, func(tx *db.Tx) error {
		now := m.clock.Now()
		s, err := lockSub(ctx, tx, p.Sub, now)
		if err != nil {
			return err
		}
		if s.Status != SubFrozen || db.Millis(s.ExpireAt) != p.Expire {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET status = $1 WHERE id = $2`, SubReleasing, s.ID); err != nil {
			return err
		}
		_, err = m.enqueue(ctx, tx, now, Outbound{SellerID: s.SellerID, SubscriptionID: s.ID, Activity: "releaseInstance", URL: url,
			Body: subBody(s, "releaseInstance"), Effect: Effect{Kind: "release", SubscriptionID: s.ID}})
		return err
	})
}

// RenewInput renews a subscription, optionally changing its plan (period
// type, spec) or linear value ("renewal with a spec change").
type RenewInput struct {
	SubscriptionID string `json:"subscriptionId"`
	PeriodNumber   int    `json:"periodNumber"`
	ProductCode    string `json:"productId,omitempty"`   // new plan; empty keeps the current one
	LinearValue    *int64 `json:"linearValue,omitempty"` // new value; nil keeps the current one
}

// Renew pays a RENEW order: the expiry moves one or more periods past the
// current one, refreshInstance (RENEWAL, or RENEWAL_CHANGE after a successful
// changeInstanceCheck) tells the merchant, and a frozen instance is unfrozen.
func (m *Market) Renew(ctx context.Context, in RenewInput) (Order, error) {
	sub, err := m.GetSubscription(ctx, in.SubscriptionID)
	if err != nil {
		return Order{}, err
	}
	if sub.Trial {
		return Order{}, refused("subscription %s is a trial; convert it (trial-to-formal) instead of renewing", sub.ID)
	}
	if sub.ChargingMode != ModePeriod && sub.ChargingMode != ModeOnDemandPkg {
		return Order{}, refused("%s subscription %s cannot be renewed", sub.ChargingMode, sub.ID)
	}
	if sub.Status != SubActive && sub.Status != SubFrozen {
		return Order{}, refused("subscription %s is %s; only an active or frozen subscription can be renewed", sub.ID, sub.Status)
	}
	if in.PeriodNumber < 1 || in.PeriodNumber > 100 {
		return Order{}, badField("periodNumber", "must be 1 to 100")
	}
	prod, url, err := m.subURL(ctx, sub)
	if err != nil {
		return Order{}, err
	}
	code := sub.ProductCode
	if in.ProductCode != "" {
		code = in.ProductCode
	}
	pl, ok := prod.plan(code)
	if !ok {
		return Order{}, badField("productId", "product %s has no plan %q", prod.ID, code)
	}
	if pl.ChargingMode != sub.ChargingMode {
		return Order{}, badField("productId", "plan %s is %s, the subscription is %s", code, pl.ChargingMode, sub.ChargingMode)
	}
	linear := sub.LinearValue
	if in.LinearValue != nil {
		linear = *in.LinearValue
	}
	if err := checkLinear("linearValue", pl, linear); err != nil {
		return Order{}, err
	}
	specChange := pl.SKUCode != sub.SKUCode || linear != sub.LinearValue
	periodChange := pl.ProductCode != sub.ProductCode
	scene := "RENEWAL"
	if specChange {
		if !prod.RenewalChangeAllowed {
			return Order{}, refused("product %s does not allow a spec change on renewal", prod.ID)
		}
		scene = "RENEWAL_CHANGE"
		// changeInstanceCheck: may the instance take the new spec?
		info, _ := json.Marshal(map[string]any{"productId": pl.ProductCode, "skuCode": pl.SKUCode, "linearValue": strconv.FormatInt(linear, 10)})
		body := changeCheckBody(sub, string(info))
		res, err := m.Call(ctx, Outbound{SellerID: sub.SellerID, SubscriptionID: sub.ID, Activity: "changeInstanceCheck", URL: url, Body: body})
		if err != nil {
			return Order{}, err
		}
		if res.Verdict != VerdictSuccess {
			return Order{}, refused("the merchant refused the change (changeInstanceCheck, message %d): %s", res.MessageID, res.Error)
		}
	}
	now := m.clock.Now().UTC()
	orderID, err := m.newOrderID(now)
	if err != nil {
		return Order{}, err
	}
	amount := price(pl, in.PeriodNumber, linear)
	return m.placeOrder(ctx, "renew", orderID, func(tx *db.Tx) error {
		s, err := lockSub(ctx, tx, sub.ID, now)
		if err != nil {
			return err
		}
		if s.Status != SubActive && s.Status != SubFrozen {
			return refused("subscription %s is %s; only an active or frozen subscription can be renewed", s.ID, s.Status)
		}
		newExpire := kg.Expiry(s.ExpireAt, pl.PeriodType, in.PeriodNumber)
		if _, err := tx.Exec(ctx, `INSERT INTO market_orders (order_id, order_type, customer_id, seller_id, product_id, subscription_id, status,
			amount_cents, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$9)`,
			orderID, OrderRenew, s.CustomerID, s.SellerID, s.ProductID, s.ID, OrderProcessing, amount, db.Millis(now)); err != nil {
			return err
		}
		if err := insertLine(ctx, tx, orderID, OrderLine{ChargingMode: pl.ChargingMode, PeriodType: pl.PeriodType, PeriodNumber: in.PeriodNumber,
			ProductCode: pl.ProductCode, SKUCode: pl.SKUCode, LinearValue: linear, ExpireAt: newExpire, AmountCents: amount}, now); err != nil {
			return err
		}
		prev, _ := json.Marshal(prevSpec{ProductCode: s.ProductCode, SKUCode: s.SKUCode, PeriodType: s.PeriodType, LinearValue: s.LinearValue})
		if _, err := tx.Exec(ctx, `UPDATE market_order_lines SET prev_expire_at = $1, prev_spec = $2 WHERE order_id = $3`,
			db.Millis(s.ExpireAt), string(prev), orderID); err != nil {
			return err
		}
		if err := m.charge(ctx, tx, now, s.CustomerID, orderID, s.ID, "charge", orderID, amount*10000, "RENEW "+pl.ProductCode); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET status = $1, expire_at = $2, frozen_at = 0, release_at = 0, product_code = $3,
			sku_code = $4, period_type = $5, linear_value = $6 WHERE id = $7`,
			SubActive, db.Millis(newExpire), pl.ProductCode, pl.SKUCode, pl.PeriodType, linear, s.ID); err != nil {
			return err
		}
		if err := m.scheduleExpiry(ctx, tx, now, s.ID, newExpire); err != nil {
			return err
		}
		productID := ""
		if specChange || periodChange {
			productID = pl.ProductCode
		}
		return m.refreshed(ctx, tx, now, s, prod, url, orderID, scene, productID, newExpire)
	})
}

// refreshed queues, in the transaction that renewed or converted s, the
// refreshInstance call that tells the merchant of orderID's new expiry, an
// unfreeze when s was frozen, and the order notification.
func (m *Market) refreshed(ctx context.Context, tx *db.Tx, now time.Time, s Subscription, prod Product, url, orderID, scene, productID string, newExpire time.Time) error {
	// the documented field order: activity, scene, orderId, orderLineId, instanceId, productId, expireTime
	body := activityBody("refreshInstance", s.TestFlag, "scene", scene, "orderId", orderID, "orderLineId", lineID(orderID),
		"instanceId", s.InstanceID, "productId", productID, "expireTime", expireTime(newExpire))
	if _, err := m.enqueue(ctx, tx, now, Outbound{SellerID: s.SellerID, SubscriptionID: s.ID, OrderID: orderID, Activity: "refreshInstance",
		URL: url, Body: body, Effect: Effect{Kind: "renew", OrderID: orderID, SubscriptionID: s.ID}}); err != nil {
		return err
	}
	if s.Status == SubFrozen {
		if err := m.unfreeze(ctx, tx, now, s, url); err != nil {
			return err
		}
	}
	return m.notifyOrder(ctx, tx, now, prod, url, orderID, s.TestFlag)
}

func changeCheckBody(s Subscription, productInfo string) []byte {
	var b []byte
	b = append(b, `{"activity":"changeInstanceCheck","instanceId":`...)
	id, _ := json.Marshal(s.InstanceID)
	b = append(b, id...)
	b = append(b, `,"productInfo":`...)
	b = append(b, productInfo...)
	if s.TestFlag {
		b = append(b, `,"testFlag":"1"`...)
	}
	// Real traffic carries no testFlag: the one version of this interface's
	// page (added 2025-09) says "1" for a debugging request and that the
	// parameter is not sent otherwise (saas-v2.md §4.7).
	return append(b, '}')
}

func (m *Market) unfreeze(ctx context.Context, tx *db.Tx, now time.Time, s Subscription, url string) error {
	_, err := m.enqueue(ctx, tx, now, Outbound{SellerID: s.SellerID, SubscriptionID: s.ID, Activity: "updateInstanceStatus", URL: url,
		Body: subBody(s, "updateInstanceStatus", "status", "UNFREEZE"), Effect: Effect{Kind: "status", SubscriptionID: s.ID}})
	return err
}

// ConvertInput turns a trial into a paid subscription.
type ConvertInput struct {
	SubscriptionID string `json:"subscriptionId"`
	ProductCode    string `json:"productId"` // the paid PERIOD plan
	PeriodNumber   int    `json:"periodNumber"`
	LinearValue    int64  `json:"linearValue,omitempty"`
}

// ConvertTrial pays a TRIAL_TO_FORMAL order: refreshInstance with scene
// TRIAL_TO_FORMAL, the new productId and the new expiry (counted from now),
// and UNFREEZE when the trial had expired.
func (m *Market) ConvertTrial(ctx context.Context, in ConvertInput) (Order, error) {
	sub, err := m.GetSubscription(ctx, in.SubscriptionID)
	if err != nil {
		return Order{}, err
	}
	if !sub.Trial {
		return Order{}, refused("subscription %s is not a trial", sub.ID)
	}
	if sub.Status != SubActive && sub.Status != SubFrozen {
		return Order{}, refused("subscription %s is %s; only an active or frozen trial can be converted", sub.ID, sub.Status)
	}
	prod, url, err := m.subURL(ctx, sub)
	if err != nil {
		return Order{}, err
	}
	pl, ok := prod.plan(in.ProductCode)
	if !ok || pl.ChargingMode != ModePeriod {
		return Order{}, badField("productId", "product %s has no PERIOD plan %q", prod.ID, in.ProductCode)
	}
	if in.PeriodNumber < 1 || in.PeriodNumber > 100 {
		return Order{}, badField("periodNumber", "must be 1 to 100")
	}
	if err := checkLinear("linearValue", pl, in.LinearValue); err != nil {
		return Order{}, err
	}
	now := m.clock.Now().UTC()
	orderID, err := m.newOrderID(now)
	if err != nil {
		return Order{}, err
	}
	amount := price(pl, in.PeriodNumber, in.LinearValue)
	newExpire := kg.Expiry(now, pl.PeriodType, in.PeriodNumber)
	return m.placeOrder(ctx, "convert trial", orderID, func(tx *db.Tx) error {
		s, err := lockSub(ctx, tx, sub.ID, now)
		if err != nil {
			return err
		}
		if !s.Trial || (s.Status != SubActive && s.Status != SubFrozen) {
			return refused("subscription %s can no longer be converted (%s)", s.ID, s.Status)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO market_orders (order_id, order_type, customer_id, seller_id, product_id, subscription_id, status,
			amount_cents, related_order_id, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$10)`,
			orderID, OrderTrialToFormal, s.CustomerID, s.SellerID, s.ProductID, s.ID, OrderProcessing, amount, s.OriginOrder, db.Millis(now)); err != nil {
			return err
		}
		if err := insertLine(ctx, tx, orderID, OrderLine{ChargingMode: pl.ChargingMode, PeriodType: pl.PeriodType, PeriodNumber: in.PeriodNumber,
			ProductCode: pl.ProductCode, SKUCode: pl.SKUCode, LinearValue: in.LinearValue, ExpireAt: newExpire, AmountCents: amount}, now); err != nil {
			return err
		}
		if err := m.charge(ctx, tx, now, s.CustomerID, orderID, s.ID, "charge", orderID, amount*10000, "TRIAL_TO_FORMAL "+pl.ProductCode); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET status = $1, trial = 0, expire_at = $2, frozen_at = 0, release_at = 0,
			product_code = $3, sku_code = $4, period_type = $5, linear_value = $6 WHERE id = $7`,
			SubActive, db.Millis(newExpire), pl.ProductCode, pl.SKUCode, pl.PeriodType, in.LinearValue, s.ID); err != nil {
			return err
		}
		if err := m.scheduleExpiry(ctx, tx, now, s.ID, newExpire); err != nil {
			return err
		}
		return m.refreshed(ctx, tx, now, s, prod, url, orderID, "TRIAL_TO_FORMAL", pl.ProductCode, newExpire)
	})
}

// UpgradeInput changes the spec of an active subscription.
type UpgradeInput struct {
	SubscriptionID string `json:"subscriptionId"`
	ProductCode    string `json:"productId,omitempty"`   // new plan (same period type); empty keeps it
	LinearValue    *int64 `json:"linearValue,omitempty"` // new value; nil keeps it
}

// Upgrade pays a CHANGE order (the price difference for the rest of the
// period) and calls upgradeInstance (retried hourly for 3 h; then the order
// is refunded and the spec stays).
func (m *Market) Upgrade(ctx context.Context, in UpgradeInput) (Order, error) {
	sub, err := m.GetSubscription(ctx, in.SubscriptionID)
	if err != nil {
		return Order{}, err
	}
	prod, url, err := m.subURL(ctx, sub)
	if err != nil {
		return Order{}, err
	}
	if !prod.UpgradeAllowed {
		return Order{}, refused("product %s does not allow upgrades", prod.ID)
	}
	if sub.Status != SubActive || sub.Trial || sub.ChargingMode != ModePeriod {
		return Order{}, refused("only an active, paid PERIOD subscription can be upgraded (this one: %s %s)", sub.Status, sub.ChargingMode)
	}
	code := sub.ProductCode
	if in.ProductCode != "" {
		code = in.ProductCode
	}
	pl, ok := prod.plan(code)
	if !ok || pl.ChargingMode != ModePeriod || pl.PeriodType != sub.PeriodType {
		return Order{}, badField("productId", "product %s has no %s PERIOD plan %q", prod.ID, sub.PeriodType, code)
	}
	linear := sub.LinearValue
	if in.LinearValue != nil {
		linear = *in.LinearValue
	}
	if err := checkLinear("linearValue", pl, linear); err != nil {
		return Order{}, err
	}
	if pl.SKUCode == sub.SKUCode && linear == sub.LinearValue {
		return Order{}, badField("productId", "the new spec equals the current one")
	}
	old, _ := prod.plan(sub.ProductCode)
	now := m.clock.Now().UTC()
	// price difference of one period, prorated over what is left of it. The
	// period counted runs from 23:59:59 Beijing time one period before the
	// expiry (where a renewed period begins, Expiry); a first period began at
	// the purchase, earlier on that day, and an upgrade before that day ends
	// pays the full difference, never more.
	diff := price(pl, 1, linear) - price(old, 1, sub.LinearValue)
	start := kg.Expiry(sub.ExpireAt, sub.PeriodType, -1)
	if total := sub.ExpireAt.Sub(start); total > 0 && diff > 0 {
		left := min(max(sub.ExpireAt.Sub(now), 0), total)
		diff = int64(float64(diff) * float64(left) / float64(total))
	}
	if diff < 0 {
		diff = 0
	}
	orderID, err := m.newOrderID(now)
	if err != nil {
		return Order{}, err
	}
	return m.placeOrder(ctx, "upgrade", orderID, func(tx *db.Tx) error {
		s, err := lockSub(ctx, tx, sub.ID, now)
		if err != nil {
			return err
		}
		if s.Status != SubActive {
			return refused("subscription %s is %s", s.ID, s.Status)
		}
		var open int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM market_orders WHERE subscription_id = $1 AND order_type = 'CHANGE' AND status = 'PROCESSING'`,
			s.ID).Scan(&open); err != nil {
			return err
		}
		if open > 0 {
			return conflict("subscription %s has an upgrade in progress", s.ID)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO market_orders (order_id, order_type, customer_id, seller_id, product_id, subscription_id, status,
			amount_cents, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$9)`,
			orderID, OrderChange, s.CustomerID, s.SellerID, s.ProductID, s.ID, OrderProcessing, diff, db.Millis(now)); err != nil {
			return err
		}
		if err := insertLine(ctx, tx, orderID, OrderLine{ChargingMode: pl.ChargingMode, PeriodType: pl.PeriodType, PeriodNumber: 1,
			ProductCode: pl.ProductCode, SKUCode: pl.SKUCode, LinearValue: linear, ExpireAt: s.ExpireAt, AmountCents: diff}, now); err != nil {
			return err
		}
		if err := m.charge(ctx, tx, now, s.CustomerID, orderID, s.ID, "charge", orderID, diff*10000, "CHANGE "+pl.ProductCode); err != nil {
			return err
		}
		body := activityBody("upgradeInstance", s.TestFlag, "instanceId", s.InstanceID, "orderId", orderID, "orderLineId", lineID(orderID))
		if _, err := m.enqueue(ctx, tx, now, Outbound{SellerID: s.SellerID, SubscriptionID: s.ID, OrderID: orderID, Activity: "upgradeInstance",
			URL: url, Body: body, Effect: Effect{Kind: "upgrade", OrderID: orderID, SubscriptionID: s.ID, ProductCode: pl.ProductCode,
				SKUCode: pl.SKUCode, Linear: linear}}); err != nil {
			return err
		}
		return m.notifyOrder(ctx, tx, now, prod, url, orderID, s.TestFlag)
	})
}

// UnsubscribeInput ends a subscription early.
type UnsubscribeInput struct {
	SubscriptionID string `json:"subscriptionId"`
	Reason         string `json:"reason,omitempty"`
	// RefundCents is a refund negotiated outside the five-day window (0 <
	// refund <= paid), as the buyer center's 退订金额. nil: self-service rules.
	RefundCents *int64 `json:"refundCents,omitempty"`
}

// Unsubscribe places an UNSUBSCRIBE order and has the merchant release the
// instance (releaseInstance carrying the unsubscribe order). Refunds follow
// KooGallery's rules (docs/market.md): within 5 days of the purchase, a full,
// no-reason refund, at most 10 times per account per natural year; after
// that, only a negotiated refund; trials and pay-per-use refund nothing.
func (m *Market) Unsubscribe(ctx context.Context, in UnsubscribeInput) (Order, error) {
	sub, err := m.GetSubscription(ctx, in.SubscriptionID)
	if err != nil {
		return Order{}, err
	}
	if sub.Status != SubActive && sub.Status != SubFrozen {
		return Order{}, refused("subscription %s is %s; only an active or frozen subscription can be unsubscribed", sub.ID, sub.Status)
	}
	prod, url, err := m.subURL(ctx, sub)
	if err != nil {
		return Order{}, err
	}
	now := m.clock.Now().UTC()
	orderID, err := m.newOrderID(now)
	if err != nil {
		return Order{}, err
	}
	return m.placeOrder(ctx, "unsubscribe", orderID, func(tx *db.Tx) error {
		s, err := lockSub(ctx, tx, sub.ID, now)
		if err != nil {
			return err
		}
		if s.Status != SubActive && s.Status != SubFrozen {
			return refused("subscription %s is %s", s.ID, s.Status)
		}
		rule, refund, refunded, err := m.refundRule(ctx, tx, now, s, in.RefundCents)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO market_orders (order_id, order_type, customer_id, seller_id, product_id, subscription_id, status,
			amount_cents, refund_cents, related_order_id, refund_rule, status_note, created_at, updated_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,0,$8,$9,$10,$11,$12,$12)`,
			orderID, OrderUnsubscribe, s.CustomerID, s.SellerID, s.ProductID, s.ID, OrderProcessing, refund, s.OriginOrder, rule, in.Reason, db.Millis(now)); err != nil {
			return err
		}
		if err := insertLine(ctx, tx, orderID, OrderLine{ChargingMode: s.ChargingMode, PeriodType: s.PeriodType, ProductCode: s.ProductCode,
			SKUCode: s.SKUCode, LinearValue: s.LinearValue, Trial: s.Trial, ExpireAt: now, AmountCents: -refund}, now); err != nil {
			return err
		}
		if refund > 0 {
			if err := m.charge(ctx, tx, now, s.CustomerID, orderID, s.ID, "refund", "refund:"+orderID, -refund*10000, "UNSUBSCRIBE ("+rule+")"); err != nil {
				return err
			}
		}
		for _, id := range refunded {
			if _, err := tx.Exec(ctx, `UPDATE market_orders SET status = $1, refund_cents = amount_cents, updated_at = $2 WHERE order_id = $3`,
				OrderRefunded, db.Millis(now), id); err != nil {
				return err
			}
		}
		expire := int64(0) // a pay-per-use or one-time subscription never had an expiry
		if !s.ExpireAt.IsZero() {
			expire = db.Millis(now)
		}
		if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET status = $1, expire_at = $2 WHERE id = $3`, SubReleasing, expire, s.ID); err != nil {
			return err
		}
		body := activityBody("releaseInstance", s.TestFlag, "instanceId", s.InstanceID, "orderId", orderID, "orderLineId", lineID(orderID))
		if _, err := m.enqueue(ctx, tx, now, Outbound{SellerID: s.SellerID, SubscriptionID: s.ID, OrderID: orderID, Activity: "releaseInstance",
			URL: url, Body: body, Effect: Effect{Kind: "release", OrderID: orderID, SubscriptionID: s.ID}}); err != nil {
			return err
		}
		return m.notifyOrder(ctx, tx, now, prod, url, orderID, s.TestFlag)
	})
}

// refundRule decides the refund of an unsubscription: the rule applied, the
// amount, and the orders it refunds in full.
func (m *Market) refundRule(ctx context.Context, tx *db.Tx, now time.Time, s Subscription, negotiated *int64) (string, int64, []string, error) {
	rows, err := tx.Query(ctx, `SELECT order_id, order_type, amount_cents, refund_cents, created_at FROM market_orders
		WHERE subscription_id = $1 AND order_type IN ('NEW', 'RENEW', 'TRIAL_TO_FORMAL', 'CHANGE') AND status IN ('PROCESSING', 'COMPLETED', 'FAILED')
		ORDER BY created_at`, s.ID)
	if err != nil {
		return "", 0, nil, err
	}
	var paid int64
	var ids []string
	var purchase time.Time
	for rows.Next() {
		var id, typ string
		var amount, refunded, created int64
		if err := rows.Scan(&id, &typ, &amount, &refunded, &created); err != nil {
			rows.Close()
			return "", 0, nil, err
		}
		if (typ == OrderNew || typ == OrderTrialToFormal) && purchase.IsZero() {
			purchase = db.FromMillis(created)
		}
		paid += amount - refunded
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", 0, nil, err
	}
	if negotiated != nil {
		if *negotiated <= 0 || *negotiated > paid {
			return "", 0, nil, badField("refundCents", "must be more than 0 and at most the %d paid", paid)
		}
		return "negotiated", *negotiated, nil, nil
	}
	if s.Trial || s.ChargingMode == ModeOnDemand || paid == 0 {
		return "none", 0, nil, nil
	}
	if purchase.IsZero() || now.Sub(purchase) > UnsubscribeWindow {
		return "", 0, nil, refused("the 5-day no-reason refund window ended %s; only a negotiated refund (refundCents) is possible",
			purchase.Add(UnsubscribeWindow).Format(time.RFC3339))
	}
	y := now.In(beijing).Year()
	yearStart := time.Date(y, 1, 1, 0, 0, 0, 0, beijing)
	var used int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM market_orders WHERE customer_id = $1 AND order_type = 'UNSUBSCRIBE' AND refund_rule = 'five-day'
		AND created_at >= $2`, s.CustomerID, db.Millis(yearStart)).Scan(&used); err != nil {
		return "", 0, nil, err
	}
	if used >= UnsubscribeYearlyLimit {
		return "", 0, nil, refused("customer %s has used its %d self-service no-reason unsubscriptions of %d", s.CustomerID, UnsubscribeYearlyLimit, y)
	}
	return "five-day", paid, ids, nil
}

// SetFrozen freezes or unfreezes a subscription outside its expiry (a
// pay-per-use account in arrears, or a violation and its clearing).
func (m *Market) SetFrozen(ctx context.Context, subID string, frozen bool) (Subscription, error) {
	sub, err := m.GetSubscription(ctx, subID)
	if err != nil {
		return Subscription{}, err
	}
	_, url, err := m.subURL(ctx, sub)
	if err != nil {
		return Subscription{}, err
	}
	err = m.db.Tx(ctx, func(tx *db.Tx) error {
		now := m.clock.Now()
		s, err := lockSub(ctx, tx, subID, now)
		if err != nil {
			return err
		}
		from, to, status := SubActive, SubFrozen, "FREEZE"
		if !frozen {
			from, to, status = SubFrozen, SubActive, "UNFREEZE"
		}
		if s.Status != from {
			return refused("subscription %s is %s, not %s", s.ID, s.Status, from)
		}
		if !frozen && !s.ExpireAt.IsZero() && !s.ExpireAt.After(now) {
			return refused("subscription %s expired at %s; renew it to unfreeze", s.ID, s.ExpireAt.Format(time.RFC3339))
		}
		frozenAt := int64(0)
		if frozen {
			frozenAt = db.Millis(now)
		}
		if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET status = $1, frozen_at = $2 WHERE id = $3`, to, frozenAt, s.ID); err != nil {
			return err
		}
		_, err = m.enqueue(ctx, tx, now, Outbound{SellerID: s.SellerID, SubscriptionID: s.ID, Activity: "updateInstanceStatus", URL: url,
			Body: subBody(s, "updateInstanceStatus", "status", status), Effect: Effect{Kind: "status", SubscriptionID: s.ID}})
		return err
	})
	if err != nil {
		return Subscription{}, m.wrap("set frozen", err)
	}
	m.Wake()
	return m.GetSubscription(ctx, subID)
}

func (m *Market) setOrder(ctx context.Context, tx *db.Tx, now time.Time, orderID, status, note string) error {
	if orderID == "" {
		return nil
	}
	_, err := tx.Exec(ctx, `UPDATE market_orders SET status = $1, status_note = $2, updated_at = $3 WHERE order_id = $4 AND status <> 'REFUNDED'`,
		status, note, db.Millis(now), orderID)
	return err
}

// applySuccess carries out what a delivered message means.
func (m *Market) applySuccess(ctx context.Context, tx *db.Tx, now time.Time, msg Message, res CallResult) error {
	e := msg.Effect
	switch e.Kind {
	case "provision":
		if res.Verdict == VerdictInProgress {
			if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET instance_id = $1, updated_at = $2 WHERE id = $3`,
				res.Response.InstanceID, db.Millis(now), e.SubscriptionID); err != nil {
				return err
			}
			s, err := scanSub(tx.QueryRow(ctx, `SELECT `+subCols+` FROM market_subscriptions WHERE id = $1`, e.SubscriptionID))
			if err != nil {
				return err
			}
			_, err = m.enqueue(ctx, tx, now, Outbound{SellerID: msg.SellerID, SubscriptionID: s.ID, OrderID: e.OrderID, Activity: "queryInstance",
				URL: msg.URL, Body: subBody(s, "queryInstance"), PolicyName: ActivityPoll, Force: true,
				Effect: Effect{Kind: "poll", OrderID: e.OrderID, SubscriptionID: s.ID, InstanceID: res.Response.InstanceID}})
			return err
		}
		return m.markReady(ctx, tx, now, e, res.Response.InstanceID)
	case "poll":
		return m.markReady(ctx, tx, now, e, e.InstanceID)
	case "renew":
		return m.setOrder(ctx, tx, now, e.OrderID, OrderCompleted, "")
	case "upgrade":
		if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET product_code = $1, sku_code = $2, linear_value = $3, updated_at = $4 WHERE id = $5`,
			e.ProductCode, e.SKUCode, e.Linear, db.Millis(now), e.SubscriptionID); err != nil {
			return err
		}
		return m.setOrder(ctx, tx, now, e.OrderID, OrderCompleted, "")
	case "release":
		if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET status = $1, released_at = $2, updated_at = $2 WHERE id = $3`,
			SubReleased, db.Millis(now), e.SubscriptionID); err != nil {
			return err
		}
		return m.setOrder(ctx, tx, now, e.OrderID, OrderCompleted, "")
	}
	return nil
}

func (m *Market) markReady(ctx context.Context, tx *db.Tx, now time.Time, e Effect, instanceID string) error {
	s, err := lockSub(ctx, tx, e.SubscriptionID, now)
	if err != nil {
		return err
	}
	if s.Status != SubProvisioning {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET status = $1, instance_id = $2, ready_at = $3 WHERE id = $4`,
		SubActive, instanceID, db.Millis(now), s.ID); err != nil {
		return err
	}
	if err := m.setOrder(ctx, tx, now, e.OrderID, OrderCompleted, ""); err != nil {
		return err
	}
	return m.scheduleExpiry(ctx, tx, now, s.ID, s.ExpireAt)
}

// applyFailure carries out the documented outcome of a message that failed
// for good.
func (m *Market) applyFailure(ctx context.Context, tx *db.Tx, now time.Time, msg Message, res CallResult) error {
	e := msg.Effect
	note := fmt.Sprintf("%s failed after %d attempt(s) (message %d): %s", msg.Activity, msg.Attempts, msg.ID, res.Error)
	switch e.Kind {
	case "provision", "poll":
		// The order fails and is unsubscribed and refunded (saas-v2.md §8.1).
		return m.failAndRefund(ctx, tx, now, msg, e, note, e.Kind == "poll")
	case "upgrade":
		return m.refundOrder(ctx, tx, now, e.OrderID, note)
	case "renew", "release":
		return m.setOrder(ctx, tx, now, e.OrderID, OrderFailed, note)
	}
	return nil
}

func (m *Market) refundOrder(ctx context.Context, tx *db.Tx, now time.Time, orderID, note string) error {
	var customer, sub string
	var amount int64
	if err := tx.QueryRow(ctx, `SELECT customer_id, subscription_id, amount_cents FROM market_orders WHERE order_id = $1`, orderID).
		Scan(&customer, &sub, &amount); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE market_orders SET status = $1, refund_cents = amount_cents, status_note = $2, updated_at = $3 WHERE order_id = $4`,
		OrderRefunded, note, db.Millis(now), orderID); err != nil {
		return err
	}
	if amount > 0 {
		return m.charge(ctx, tx, now, customer, orderID, sub, "refund", "refund:"+orderID, -amount*10000, "automatic refund: "+orderID+" failed")
	}
	return nil
}

func (m *Market) failAndRefund(ctx context.Context, tx *db.Tx, now time.Time, msg Message, e Effect, note string, release bool) error {
	s, err := lockSub(ctx, tx, e.SubscriptionID, now)
	if err != nil {
		return err
	}
	if s.Status != SubProvisioning {
		return nil
	}
	if err := m.refundOrder(ctx, tx, now, e.OrderID, note); err != nil {
		return err
	}
	unsub, err := m.newOrderID(now)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO market_orders (order_id, order_type, customer_id, seller_id, product_id, subscription_id, status,
		amount_cents, related_order_id, refund_rule, status_note, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,0,$8,'create-failed',$9,$10,$10)`,
		unsub, OrderUnsubscribe, s.CustomerID, s.SellerID, s.ProductID, s.ID, OrderCompleted, e.OrderID, note, db.Millis(now)); err != nil {
		return err
	}
	if err := insertLine(ctx, tx, unsub, OrderLine{ChargingMode: s.ChargingMode, PeriodType: s.PeriodType, ProductCode: s.ProductCode,
		SKUCode: s.SKUCode, LinearValue: s.LinearValue, Trial: s.Trial, ExpireAt: now}, now); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET status = $1 WHERE id = $2`, SubFailed, s.ID); err != nil {
		return err
	}
	var notify int
	if err := tx.QueryRow(ctx, `SELECT order_notify FROM market_products WHERE id = $1`, s.ProductID).Scan(&notify); err != nil {
		return err
	}
	if err := m.notifyOrder(ctx, tx, now, Product{SellerID: s.SellerID, OrderNotify: notify == 1}, msg.URL, unsub, s.TestFlag); err != nil {
		return err
	}
	if release && s.InstanceID != "" {
		if _, err := tx.Exec(ctx, `UPDATE market_orders SET status = $1 WHERE order_id = $2`, OrderProcessing, unsub); err != nil {
			return err
		}
		body := activityBody("releaseInstance", s.TestFlag, "instanceId", s.InstanceID, "orderId", unsub, "orderLineId", lineID(unsub))
		if _, err := m.enqueue(ctx, tx, now, Outbound{SellerID: s.SellerID, SubscriptionID: s.ID, OrderID: unsub, Activity: "releaseInstance",
			URL: msg.URL, Body: body, Effect: Effect{Kind: "release", OrderID: unsub, SubscriptionID: s.ID}}); err != nil {
			return err
		}
	}
	return nil
}

// prevSpec is the spec a renewal replaced (market_order_lines.prev_spec).
type prevSpec struct {
	ProductCode string `json:"productCode"`
	SKUCode     string `json:"skuCode"`
	PeriodType  string `json:"periodType"`
	LinearValue int64  `json:"linearValue"`
}

// CancelRenewal unsubscribes the latest renewal period of a subscription
// before it has begun: the RENEW order is refunded in full (an UNSUBSCRIBE
// order with rule renewal-cancel), the expiry goes back to what it was, and
// the merchant gets refreshInstance with scene UNSUBSCRIBE_RENEWAL_PERIOD, the
// cancelled renewal order and the restored expireTime.
func (m *Market) CancelRenewal(ctx context.Context, subID string) (Order, error) {
	sub, err := m.GetSubscription(ctx, subID)
	if err != nil {
		return Order{}, err
	}
	prod, url, err := m.subURL(ctx, sub)
	if err != nil {
		return Order{}, err
	}
	now := m.clock.Now().UTC()
	orderID, err := m.newOrderID(now)
	if err != nil {
		return Order{}, err
	}
	return m.placeOrder(ctx, "cancel renewal", orderID, func(tx *db.Tx) error {
		s, err := lockSub(ctx, tx, subID, now)
		if err != nil {
			return err
		}
		if s.Status != SubActive {
			return refused("subscription %s is %s; only an active subscription's renewal can be cancelled", s.ID, s.Status)
		}
		var renewID, prevSpecJSON string
		var amount, prev, until int64
		err = tx.QueryRow(ctx, `SELECT o.order_id, o.amount_cents, l.prev_expire_at, l.expire_at, l.prev_spec FROM market_orders o
			JOIN market_order_lines l ON l.order_id = o.order_id
			WHERE o.subscription_id = $1 AND o.order_type = 'RENEW' AND o.status IN ('PROCESSING', 'COMPLETED')
			ORDER BY l.expire_at DESC, o.created_at DESC, o.order_id DESC LIMIT 1`, s.ID).Scan(&renewID, &amount, &prev, &until, &prevSpecJSON)
		if errors.Is(err, sql.ErrNoRows) {
			return refused("subscription %s has no renewal to cancel", s.ID)
		}
		if err != nil {
			return err
		}
		if until != db.Millis(s.ExpireAt) || prev == 0 {
			return refused("the latest renewal %s of subscription %s is no longer its last period", renewID, s.ID)
		}
		if !db.FromMillis(prev).After(now) {
			return refused("the renewal period of order %s began at %s; it can no longer be cancelled", renewID, db.FromMillis(prev).Format(time.RFC3339))
		}
		if _, err := tx.Exec(ctx, `INSERT INTO market_orders (order_id, order_type, customer_id, seller_id, product_id, subscription_id, status,
			amount_cents, refund_cents, related_order_id, refund_rule, created_at, updated_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,0,$8,$9,'renewal-cancel',$10,$10)`,
			orderID, OrderUnsubscribe, s.CustomerID, s.SellerID, s.ProductID, s.ID, OrderProcessing, amount, renewID, db.Millis(now)); err != nil {
			return err
		}
		if err := insertLine(ctx, tx, orderID, OrderLine{ChargingMode: s.ChargingMode, PeriodType: s.PeriodType, ProductCode: s.ProductCode,
			SKUCode: s.SKUCode, LinearValue: s.LinearValue, ExpireAt: db.FromMillis(prev), AmountCents: -amount}, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE market_orders SET status = $1, refund_cents = amount_cents, updated_at = $2 WHERE order_id = $3`,
			OrderRefunded, db.Millis(now), renewID); err != nil {
			return err
		}
		if amount > 0 {
			if err := m.charge(ctx, tx, now, s.CustomerID, orderID, s.ID, "refund", "refund:"+orderID, -amount*10000, "renewal "+renewID+" cancelled"); err != nil {
				return err
			}
		}
		// The spec the renewal replaced comes back with the expiry (a
		// RENEWAL_CHANGE renewal changed it; renewals stored before
		// prev_spec existed keep the current one).
		spec := prevSpec{ProductCode: s.ProductCode, SKUCode: s.SKUCode, PeriodType: s.PeriodType, LinearValue: s.LinearValue}
		if prevSpecJSON != "" {
			if err := json.Unmarshal([]byte(prevSpecJSON), &spec); err != nil {
				return fmt.Errorf("renewal %s: stored previous spec: %w", renewID, err)
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE market_subscriptions SET expire_at = $1, product_code = $2, sku_code = $3, period_type = $4,
			linear_value = $5 WHERE id = $6`, prev, spec.ProductCode, spec.SKUCode, spec.PeriodType, spec.LinearValue, s.ID); err != nil {
			return err
		}
		if err := m.scheduleExpiry(ctx, tx, now, s.ID, db.FromMillis(prev)); err != nil {
			return err
		}
		productID := "" // as on renewal: the productId goes with a change of plan
		if spec.ProductCode != s.ProductCode {
			productID = spec.ProductCode
		}
		body := activityBody("refreshInstance", s.TestFlag, "scene", "UNSUBSCRIBE_RENEWAL_PERIOD", "orderId", renewID,
			"orderLineId", lineID(renewID), "instanceId", s.InstanceID, "productId", productID, "expireTime", expireTime(db.FromMillis(prev)))
		if _, err := m.enqueue(ctx, tx, now, Outbound{SellerID: s.SellerID, SubscriptionID: s.ID, OrderID: orderID, Activity: "refreshInstance",
			URL: url, Body: body, Effect: Effect{Kind: "renew", OrderID: orderID, SubscriptionID: s.ID}}); err != nil {
			return err
		}
		return m.notifyOrder(ctx, tx, now, prod, url, orderID, s.TestFlag)
	})
}
