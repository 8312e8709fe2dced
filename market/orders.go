package market

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
)

// Order types (Query Order orderInfo.orderType).
const (
	OrderNew           = "NEW"
	OrderTrial         = "TRIAL"
	OrderTrialToFormal = "TRIAL_TO_FORMAL"
	OrderRenew         = "RENEW"
	OrderUnsubscribe   = "UNSUBSCRIBE"
	OrderChange        = "CHANGE"
)

// Order states (market-side).
const (
	OrderProcessing = "PROCESSING" // paid; the merchant has not confirmed yet
	OrderCompleted  = "COMPLETED"
	OrderFailed     = "FAILED"   // the call failed for good; a manual restart may complete it
	OrderRefunded   = "REFUNDED" // failed and automatically unsubscribed and refunded
)

// Subscription states.
const (
	SubProvisioning = "PROVISIONING"
	SubActive       = "ACTIVE"
	SubFrozen       = "FROZEN"
	SubReleasing    = "RELEASING"
	SubReleased     = "RELEASED"
	SubFailed       = "FAILED"
)

// Customer is a buyer account.
type Customer struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	UserID      string    `json:"userId"`
	UserName    string    `json:"userName"`
	MobilePhone string    `json:"mobilePhone,omitempty"`
	Email       string    `json:"email,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
}

// ExtendParam is a name/value pair of an order.
type ExtendParam struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// OrderLine is one line of an order.
type OrderLine struct {
	OrderLineID  string    `json:"orderLineId"`
	ChargingMode string    `json:"chargingMode"`
	PeriodType   string    `json:"periodType,omitempty"`
	PeriodNumber int       `json:"periodNumber,omitempty"`
	ProductCode  string    `json:"productId"`
	SKUCode      string    `json:"skuCode"`
	LinearValue  int64     `json:"linearValue,omitempty"`
	Trial        bool      `json:"trial,omitempty"`
	ExpireAt     time.Time `json:"expireAt,omitzero"`
	AmountCents  int64     `json:"amountCents"`
}

// Order is a market order.
type Order struct {
	OrderID        string        `json:"orderId"`
	OrderType      string        `json:"orderType"`
	CustomerID     string        `json:"customerId"`
	SellerID       string        `json:"sellerId"`
	ProductID      string        `json:"productId"`
	SubscriptionID string        `json:"subscriptionId"`
	Status         string        `json:"status"`
	AmountCents    int64         `json:"amountCents"`
	RefundCents    int64         `json:"refundCents"`
	RelatedOrderID string        `json:"relatedOrderId,omitempty"`
	RefundRule     string        `json:"refundRule,omitempty"`
	StatusNote     string        `json:"statusNote,omitempty"`
	ExtendParams   []ExtendParam `json:"extendParams,omitempty"`
	CreatedAt      time.Time     `json:"createdAt"`
	UpdatedAt      time.Time     `json:"updatedAt"`
	Lines          []OrderLine   `json:"lines"`
}

// Subscription is what a buyer owns: one instance at the merchant.
type Subscription struct {
	ID           string    `json:"id"`
	CustomerID   string    `json:"customerId"`
	SellerID     string    `json:"sellerId"`
	ProductID    string    `json:"productId"`
	ProductCode  string    `json:"productCode"`
	SKUCode      string    `json:"skuCode"`
	ChargingMode string    `json:"chargingMode"`
	PeriodType   string    `json:"periodType,omitempty"`
	LinearValue  int64     `json:"linearValue,omitempty"`
	Trial        bool      `json:"trial"`
	TestFlag     bool      `json:"testFlag"`
	Status       string    `json:"status"`
	InstanceID   string    `json:"instanceId,omitempty"`
	OriginOrder  string    `json:"originOrder"`
	ExpireAt     time.Time `json:"expireAt,omitzero"`
	FrozenAt     time.Time `json:"frozenAt,omitzero"`
	ReleaseAt    time.Time `json:"releaseAt,omitzero"`
	ReleasedAt   time.Time `json:"releasedAt,omitzero"`
	ReadyAt      time.Time `json:"readyAt,omitzero"`
	BusinessID   string    `json:"businessId,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// CreateCustomer registers a buyer. Empty ids are generated.
func (m *Market) CreateCustomer(ctx context.Context, c Customer) (Customer, error) {
	if strings.TrimSpace(c.Name) == "" {
		return Customer{}, badField("name", "is required")
	}
	var err error
	if c.ID == "" {
		if c.ID, err = m.randomHex(16); err != nil {
			return Customer{}, err
		}
		c.ID = strings.ToLower(c.ID)
	} else if err := checkID("id", c.ID); err != nil {
		return Customer{}, err
	}
	if c.UserID == "" {
		c.UserID = c.ID
	}
	if c.UserName == "" {
		c.UserName = c.Name
	}
	if c.Email != "" && !strings.Contains(c.Email, "@") {
		return Customer{}, badField("email", "is not an e-mail address")
	}
	c.CreatedAt = m.clock.Now().UTC()
	_, err = m.db.Exec(ctx, `INSERT INTO market_customers (id, name, user_id, user_name, mobile_phone, email, created_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7)`, c.ID, c.Name, c.UserID, c.UserName, c.MobilePhone, c.Email, db.Millis(c.CreatedAt))
	if db.IsUniqueViolation(err) {
		return Customer{}, conflict("customer %q already exists", c.ID)
	}
	if err != nil {
		return Customer{}, fmt.Errorf("market: create customer: %w", err)
	}
	return c, nil
}

// GetCustomer returns a buyer.
func (m *Market) GetCustomer(ctx context.Context, id string) (Customer, error) {
	var c Customer
	var created int64
	err := m.db.QueryRow(ctx, `SELECT id, name, user_id, user_name, mobile_phone, email, created_at FROM market_customers WHERE id = $1`, id).
		Scan(&c.ID, &c.Name, &c.UserID, &c.UserName, &c.MobilePhone, &c.Email, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Customer{}, notFound("customer", id)
	}
	if err != nil {
		return Customer{}, fmt.Errorf("market: get customer: %w", err)
	}
	c.CreatedAt = db.FromMillis(created)
	return c, nil
}

// ListCustomers returns every buyer.
func (m *Market) ListCustomers(ctx context.Context) ([]Customer, error) {
	rows, err := m.db.Query(ctx, `SELECT id FROM market_customers ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("market: list customers: %w", err)
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("market: list customers: %w", err)
	}
	out := make([]Customer, 0, len(ids))
	for _, id := range ids {
		c, err := m.GetCustomer(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// newOrderID returns a KooGallery-style order id: "CS" + yyMMddHHmm in
// Beijing time + 5 characters. KooGallery's own Query Order example pairs the
// order CS2207261447AUY4H with createTime 20220726064736: the id carries the
// placing time in UTC+8 while createTime is UTC
// (huaweicloud.com/guide/productsdesc-bms_0dff4d8a9ede975f6674698a8064dbbesupport0).
func (m *Market) newOrderID(now time.Time) (string, error) {
	c, err := m.randomCode(5)
	if err != nil {
		return "", err
	}
	return "CS" + now.In(beijing).Format("0601021504") + c, nil
}

func lineID(orderID string) string { return orderID + "-000001" }

func (m *Market) retentionOf(p Product) time.Duration {
	if p.RetentionDays >= 0 {
		return time.Duration(p.RetentionDays) * 24 * time.Hour
	}
	return m.retention
}

// price returns the amount of n periods of a plan with a linear value.
func price(pl Plan, periods int, linear int64) int64 {
	q := linear
	if q < 1 {
		q = 1
	}
	switch pl.ChargingMode {
	case ModeOnDemand:
		return 0
	case ModeOneTime:
		return pl.PriceCents * q
	}
	if periods < 1 {
		periods = 1
	}
	return pl.PriceCents * int64(periods) * q
}

func checkLinear(field string, pl Plan, v int64) error {
	if pl.Linear == nil {
		if v != 0 {
			return badField(field, "plan %s has no linear attribute", pl.ProductCode)
		}
		return nil
	}
	if v < pl.Linear.Min || v > pl.Linear.Max {
		return badField(field, "%s must be %d to %d", pl.Linear.Name, pl.Linear.Min, pl.Linear.Max)
	}
	return nil
}

// BuyInput places a NEW (or TRIAL) order.
type BuyInput struct {
	CustomerID     string        `json:"customerId"`
	ProductCode    string        `json:"productId"` // the plan's productId
	PeriodNumber   int           `json:"periodNumber,omitempty"`
	LinearValue    int64         `json:"linearValue,omitempty"`
	Trial          bool          `json:"trial,omitempty"`
	TestFlag       bool          `json:"testFlag,omitempty"`
	ExtendParams   []ExtendParam `json:"extendParams,omitempty"`
	IdempotencyKey string        `json:"idempotencyKey,omitempty"`
}

// planByCode finds a plan and its product.
func (m *Market) planByCode(ctx context.Context, field, code string) (Product, Plan, error) {
	var pid string
	err := m.db.QueryRow(ctx, `SELECT product_id FROM market_plans WHERE product_code = $1`, code).Scan(&pid)
	if errors.Is(err, sql.ErrNoRows) {
		return Product{}, Plan{}, badField(field, "no plan has productId %q", code)
	}
	if err != nil {
		return Product{}, Plan{}, fmt.Errorf("market: plan: %w", err)
	}
	p, err := m.GetProduct(ctx, pid)
	if err != nil {
		return Product{}, Plan{}, err
	}
	pl, _ := p.plan(code)
	return p, pl, nil
}

// Buy pays a new order (or starts a trial) and has the merchant create the
// instance: newInstance (retried hourly for 3 h), then queryInstance polling
// when the merchant answers 000004.
func (m *Market) Buy(ctx context.Context, in BuyInput) (Order, error) {
	if in.IdempotencyKey != "" {
		if o, ok, err := m.orderByKey(ctx, in.IdempotencyKey); err != nil || ok {
			return o, err
		}
	}
	cust, err := m.GetCustomer(ctx, in.CustomerID)
	if err != nil {
		if IsNotFound(err) {
			return Order{}, badField("customerId", "customer %q does not exist", in.CustomerID)
		}
		return Order{}, err
	}
	prod, pl, err := m.planByCode(ctx, "productId", in.ProductCode)
	if err != nil {
		return Order{}, err
	}
	if err := m.checkGate(ctx, prod.ID); err != nil {
		return Order{}, err
	}
	if in.Trial && pl.Linear != nil && in.LinearValue == 0 {
		in.LinearValue = pl.Linear.Min // a trial of a linear plan gets its smallest quantity
	}
	if err := checkLinear("linearValue", pl, in.LinearValue); err != nil {
		return Order{}, err
	}
	url, err := m.productURL(ctx, prod)
	if err != nil {
		return Order{}, err
	}
	now := m.clock.Now().UTC()
	orderType := OrderNew
	periodType, periods := pl.PeriodType, in.PeriodNumber
	var expire time.Time
	var amount int64
	switch {
	case in.Trial:
		if prod.TrialDays <= 0 {
			return Order{}, badField("trial", "product %s offers no trial", prod.ID)
		}
		if pl.ChargingMode != ModePeriod {
			return Order{}, badField("trial", "a trial is of a PERIOD plan")
		}
		var used int
		if err := m.db.QueryRow(ctx, `SELECT COUNT(*) FROM market_orders WHERE customer_id = $1 AND product_id = $2 AND order_type = 'TRIAL'`,
			cust.ID, prod.ID).Scan(&used); err != nil {
			return Order{}, fmt.Errorf("market: buy: %w", err)
		}
		if used > 0 {
			return Order{}, refused("customer %s has already tried product %s", cust.ID, prod.ID)
		}
		orderType, periodType, periods = OrderTrial, "day", prod.TrialDays
		expire = kg.Expiry(now, "day", prod.TrialDays)
	case pl.ChargingMode == ModePeriod || pl.ChargingMode == ModeOnDemandPkg:
		if periods < 1 || periods > 100 {
			return Order{}, badField("periodNumber", "must be 1 to 100 for plan %s (%s)", pl.ProductCode, pl.ChargingMode)
		}
		expire = kg.Expiry(now, periodType, periods)
		amount = price(pl, periods, in.LinearValue)
	default:
		if periods != 0 {
			return Order{}, badField("periodNumber", "must be empty for plan %s (%s)", pl.ProductCode, pl.ChargingMode)
		}
		amount = price(pl, 0, in.LinearValue)
	}
	orderID, err := m.newOrderID(now)
	if err != nil {
		return Order{}, err
	}
	subID, err := m.newID("sub-")
	if err != nil {
		return Order{}, err
	}
	businessID, err := m.newUUID()
	if err != nil {
		return Order{}, err
	}
	ext, _ := json.Marshal(nonNil(in.ExtendParams))
	var key any
	if in.IdempotencyKey != "" {
		key = in.IdempotencyKey
	}
	o, err := m.placeOrder(ctx, "buy", orderID, func(tx *db.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO market_subscriptions (id, customer_id, seller_id, product_id, product_code, sku_code, charging_mode,
			period_type, linear_value, trial, test_flag, status, origin_order, expire_at, business_id, created_at, updated_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$16)`,
			subID, cust.ID, prod.SellerID, prod.ID, pl.ProductCode, pl.SKUCode, pl.ChargingMode, pl.PeriodType, in.LinearValue,
			db.Bool(in.Trial), db.Bool(in.TestFlag), SubProvisioning, orderID, db.Millis(expire), businessID, db.Millis(now)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO market_orders (order_id, order_type, customer_id, seller_id, product_id, subscription_id, status,
			amount_cents, extend_params, idempotency_key, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$11)`,
			orderID, orderType, cust.ID, prod.SellerID, prod.ID, subID, OrderProcessing, amount, string(ext), key, db.Millis(now)); err != nil {
			if db.IsUniqueViolation(err) {
				return errDuplicateKey
			}
			return err
		}
		if err := insertLine(ctx, tx, orderID, OrderLine{ChargingMode: pl.ChargingMode, PeriodType: periodType, PeriodNumber: periods,
			ProductCode: pl.ProductCode, SKUCode: pl.SKUCode, LinearValue: in.LinearValue, Trial: in.Trial, ExpireAt: expire, AmountCents: amount}, now); err != nil {
			return err
		}
		if err := m.charge(ctx, tx, now, cust.ID, orderID, subID, "charge", orderID, amount*10000, orderType+" "+pl.ProductCode); err != nil {
			return err
		}
		body := activityBody("newInstance", in.TestFlag,
			"orderId", orderID, "orderLineId", lineID(orderID), "businessId", businessID)
		if _, err := m.enqueue(ctx, tx, now, Outbound{SellerID: prod.SellerID, SubscriptionID: subID, OrderID: orderID, Activity: "newInstance",
			URL: url, Body: body, Effect: Effect{Kind: "provision", OrderID: orderID, SubscriptionID: subID}}); err != nil {
			return err
		}
		return m.notifyOrder(ctx, tx, now, prod, url, orderID, in.TestFlag)
	})
	if errors.Is(err, errDuplicateKey) {
		o, _, err = m.orderByKey(ctx, in.IdempotencyKey)
	}
	return o, err
}

var errDuplicateKey = errors.New("market: duplicate idempotency key")

func nonNil(p []ExtendParam) []ExtendParam {
	if p == nil {
		return []ExtendParam{}
	}
	return p
}

// placeOrder runs place, the transaction that places orderID and queues its
// calls, then wakes the dispatcher and returns the order.
func (m *Market) placeOrder(ctx context.Context, op, orderID string, place func(tx *db.Tx) error) (Order, error) {
	if err := m.db.Tx(ctx, place); err != nil {
		return Order{}, m.wrap(op, err)
	}
	m.Wake()
	return m.GetOrder(ctx, orderID)
}

func (m *Market) wrap(op string, err error) error {
	var me *Error
	if errors.As(err, &me) {
		return err
	}
	return fmt.Errorf("market: %s: %w", op, err)
}

// notifyOrder sends the optional orderNotify (general key) for products that
// subscribed to it.
func (m *Market) notifyOrder(ctx context.Context, tx *db.Tx, now time.Time, prod Product, url, orderID string, test bool) error {
	if !prod.OrderNotify {
		return nil
	}
	body := activityBody("orderNotify", test, "orderId", orderID, "orderLineId", lineID(orderID))
	_, err := m.enqueue(ctx, tx, now, Outbound{SellerID: prod.SellerID, OrderID: orderID, Activity: "orderNotify", URL: url, KeyType: KeyGeneral,
		Body: body, Effect: Effect{Kind: "notify", OrderID: orderID}})
	return err
}

// activityBody builds a request body with fields in the documented order:
// activity first, then the pairs, then testFlag.
func activityBody(activity string, test bool, kv ...string) []byte {
	var b strings.Builder
	b.WriteString(`{"activity":`)
	writeJSONString(&b, activity)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		b.WriteByte(',')
		writeJSONString(&b, kv[i])
		b.WriteByte(':')
		writeJSONString(&b, kv[i+1])
	}
	b.WriteString(`,"testFlag":`)
	if test {
		b.WriteString(`"1"`)
	} else {
		b.WriteString(`"0"`)
	}
	b.WriteByte('}')
	return []byte(b.String())
}

func writeJSONString(b *strings.Builder, s string) {
	v, _ := json.Marshal(s)
	b.Write(v)
}

func insertLine(ctx context.Context, tx *db.Tx, orderID string, l OrderLine, now time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO market_order_lines (order_line_id, order_id, charging_mode, period_type, period_number, product_code,
		sku_code, linear_value, trial, expire_at, amount_cents, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)`,
		lineID(orderID), orderID, l.ChargingMode, l.PeriodType, l.PeriodNumber, l.ProductCode, l.SKUCode, l.LinearValue, db.Bool(l.Trial),
		db.Millis(l.ExpireAt), l.AmountCents, db.Millis(now))
	return err
}

// charge writes a bill entry (amount in micros; negative for refunds),
// idempotent per ref.
func (m *Market) charge(ctx context.Context, tx *db.Tx, now time.Time, customerID, orderID, subID, kind, ref string, micros int64, note string) error {
	_, err := tx.Exec(ctx, `INSERT INTO market_bill (customer_id, kind, order_id, subscription_id, ref, amount_micros, note, at)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (ref) DO NOTHING`, customerID, kind, orderID, subID, ref, micros, note, db.Millis(now))
	return err
}

func (m *Market) orderByKey(ctx context.Context, key string) (Order, bool, error) {
	var id string
	err := m.db.QueryRow(ctx, `SELECT order_id FROM market_orders WHERE idempotency_key = $1`, key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, false, nil
	}
	if err != nil {
		return Order{}, false, fmt.Errorf("market: order by key: %w", err)
	}
	o, err := m.GetOrder(ctx, id)
	return o, err == nil, err
}

const orderCols = `order_id, order_type, customer_id, seller_id, product_id, subscription_id, status, amount_cents, refund_cents,
	related_order_id, refund_rule, status_note, extend_params, created_at, updated_at`

func scanOrder(s scanner) (Order, error) {
	var o Order
	var ext string
	var created, updated int64
	if err := s.Scan(&o.OrderID, &o.OrderType, &o.CustomerID, &o.SellerID, &o.ProductID, &o.SubscriptionID, &o.Status, &o.AmountCents,
		&o.RefundCents, &o.RelatedOrderID, &o.RefundRule, &o.StatusNote, &ext, &created, &updated); err != nil {
		return Order{}, err
	}
	_ = json.Unmarshal([]byte(ext), &o.ExtendParams)
	o.CreatedAt, o.UpdatedAt = db.FromMillis(created), db.FromMillis(updated)
	return o, nil
}

// GetOrder returns an order with its lines.
func (m *Market) GetOrder(ctx context.Context, id string) (Order, error) {
	o, err := scanOrder(m.db.QueryRow(ctx, `SELECT `+orderCols+` FROM market_orders WHERE order_id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, notFound("order", id)
	}
	if err != nil {
		return Order{}, fmt.Errorf("market: get order: %w", err)
	}
	rows, err := m.db.Query(ctx, `SELECT order_line_id, charging_mode, period_type, period_number, product_code, sku_code, linear_value, trial,
		expire_at, amount_cents FROM market_order_lines WHERE order_id = $1 ORDER BY order_line_id`, id)
	if err != nil {
		return Order{}, fmt.Errorf("market: get order lines: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var l OrderLine
		var trial int
		var exp int64
		if err := rows.Scan(&l.OrderLineID, &l.ChargingMode, &l.PeriodType, &l.PeriodNumber, &l.ProductCode, &l.SKUCode, &l.LinearValue,
			&trial, &exp, &l.AmountCents); err != nil {
			return Order{}, fmt.Errorf("market: get order lines: %w", err)
		}
		l.Trial, l.ExpireAt = trial == 1, db.FromMillis(exp)
		o.Lines = append(o.Lines, l)
	}
	return o, rows.Err()
}

// ListOrders returns orders of a customer or a subscription (or all), newest first.
func (m *Market) ListOrders(ctx context.Context, customerID, subscriptionID string, limit int) ([]Order, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := m.db.Query(ctx, `SELECT order_id FROM market_orders WHERE ($1 = '' OR customer_id = $1) AND ($2 = '' OR subscription_id = $2)
		ORDER BY created_at DESC, order_id DESC LIMIT $3`, customerID, subscriptionID, limit)
	if err != nil {
		return nil, fmt.Errorf("market: list orders: %w", err)
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("market: list orders: %w", err)
	}
	out := make([]Order, 0, len(ids))
	for _, id := range ids {
		o, err := m.GetOrder(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

const subCols = `id, customer_id, seller_id, product_id, product_code, sku_code, charging_mode, period_type, linear_value, trial, test_flag,
	status, instance_id, origin_order, expire_at, frozen_at, release_at, released_at, ready_at, business_id, created_at, updated_at`

func scanSub(s scanner) (Subscription, error) {
	var x Subscription
	var trial, test int
	var exp, fr, rel, reld, ready, created, updated int64
	if err := s.Scan(&x.ID, &x.CustomerID, &x.SellerID, &x.ProductID, &x.ProductCode, &x.SKUCode, &x.ChargingMode, &x.PeriodType, &x.LinearValue,
		&trial, &test, &x.Status, &x.InstanceID, &x.OriginOrder, &exp, &fr, &rel, &reld, &ready, &x.BusinessID, &created, &updated); err != nil {
		return Subscription{}, err
	}
	x.Trial, x.TestFlag = trial == 1, test == 1
	x.ExpireAt, x.FrozenAt, x.ReleaseAt, x.ReleasedAt, x.ReadyAt = db.FromMillis(exp), db.FromMillis(fr), db.FromMillis(rel), db.FromMillis(reld), db.FromMillis(ready)
	x.CreatedAt, x.UpdatedAt = db.FromMillis(created), db.FromMillis(updated)
	return x, nil
}

// GetSubscription returns a subscription.
func (m *Market) GetSubscription(ctx context.Context, id string) (Subscription, error) {
	s, err := scanSub(m.db.QueryRow(ctx, `SELECT `+subCols+` FROM market_subscriptions WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Subscription{}, notFound("subscription", id)
	}
	if err != nil {
		return Subscription{}, fmt.Errorf("market: get subscription: %w", err)
	}
	return s, nil
}

// lockSub reads a subscription inside tx after taking its row lock (an
// UPDATE locks the row on both backends), so that concurrent lifecycle
// changes of one subscription serialize.
func lockSub(ctx context.Context, tx *db.Tx, id string, now time.Time) (Subscription, error) {
	r, err := tx.Exec(ctx, `UPDATE market_subscriptions SET updated_at = $1 WHERE id = $2`, db.Millis(now), id)
	if err != nil {
		return Subscription{}, err
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return Subscription{}, notFound("subscription", id)
	}
	return scanSub(tx.QueryRow(ctx, `SELECT `+subCols+` FROM market_subscriptions WHERE id = $1`, id))
}

// ListSubscriptions returns a customer's subscriptions (all when empty).
func (m *Market) ListSubscriptions(ctx context.Context, customerID string) ([]Subscription, error) {
	rows, err := m.db.Query(ctx, `SELECT `+subCols+` FROM market_subscriptions WHERE ($1 = '' OR customer_id = $1) ORDER BY created_at, id`, customerID)
	if err != nil {
		return nil, fmt.Errorf("market: list subscriptions: %w", err)
	}
	defer rows.Close()
	var out []Subscription
	for rows.Next() {
		s, err := scanSub(rows)
		if err != nil {
			return nil, fmt.Errorf("market: list subscriptions: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// BillEntry is one line of a buyer's bill.
type BillEntry struct {
	ID             int64     `json:"id"`
	Kind           string    `json:"kind"` // charge | refund | usage
	OrderID        string    `json:"orderId,omitempty"`
	SubscriptionID string    `json:"subscriptionId,omitempty"`
	Ref            string    `json:"ref"`
	AmountMicros   int64     `json:"amountMicros"` // 1e-6 of the currency; refunds are negative
	Note           string    `json:"note,omitempty"`
	At             time.Time `json:"at"`
}

// Bill is a buyer's bill with its total.
type Bill struct {
	CustomerID  string      `json:"customerId"`
	Entries     []BillEntry `json:"entries"`
	TotalMicros int64       `json:"totalMicros"`
}

// GetBill returns a buyer's bill.
func (m *Market) GetBill(ctx context.Context, customerID string) (Bill, error) {
	rows, err := m.db.Query(ctx, `SELECT id, kind, order_id, subscription_id, ref, amount_micros, note, at FROM market_bill
		WHERE customer_id = $1 ORDER BY at, id`, customerID)
	if err != nil {
		return Bill{}, fmt.Errorf("market: bill: %w", err)
	}
	defer rows.Close()
	b := Bill{CustomerID: customerID, Entries: []BillEntry{}}
	for rows.Next() {
		var e BillEntry
		var at int64
		if err := rows.Scan(&e.ID, &e.Kind, &e.OrderID, &e.SubscriptionID, &e.Ref, &e.AmountMicros, &e.Note, &at); err != nil {
			return Bill{}, fmt.Errorf("market: bill: %w", err)
		}
		e.At = db.FromMillis(at)
		b.TotalMicros += e.AmountMicros
		b.Entries = append(b.Entries, e)
	}
	return b, rows.Err()
}

// expireTime formats an expiry for the wire (yyyyMMddHHmmss, UTC).
func expireTime(t time.Time) string { return kg.FormatTime14(t) }
