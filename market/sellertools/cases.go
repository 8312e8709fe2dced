package sellertools

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/soukhq/souk/db"
)

// Case is a saved debug case (调试用例): a call that passed, replayed by the
// dial tests.
type Case struct {
	ID             int64             `json:"id"`
	SellerID       string            `json:"sellerId"`
	ProductID      string            `json:"productId"`
	Activity       string            `json:"activity"`
	Name           string            `json:"name"`
	URL            string            `json:"url"`
	KeyType        string            `json:"keyType"`
	Params         map[string]string `json:"params"`
	Body           json.RawMessage   `json:"body"`
	Response       json.RawMessage   `json:"response,omitempty"`
	ResultCode     string            `json:"resultCode"`
	InstanceID     string            `json:"instanceId,omitempty"`
	MessageID      int64             `json:"messageId"`
	CreatedAt      time.Time         `json:"createdAt"`
	UpdatedAt      time.Time         `json:"updatedAt"`
	LastDialAt     time.Time         `json:"lastDialAt,omitzero"`
	LastDialPassed bool              `json:"lastDialPassed"`
	LastDialError  string            `json:"lastDialError,omitempty"`
}

const caseCols = `id, seller_id, product_id, activity, name, url, key_type, params, body, response, result_code, instance_id,
	message_id, created_at, updated_at, last_dial_at, last_dial_passed, last_dial_error`

type scanner interface{ Scan(dest ...any) error }

func scanCase(s scanner) (Case, error) {
	var c Case
	var params, body, resp string
	var created, updated, dialAt int64
	var dialPassed int
	if err := s.Scan(&c.ID, &c.SellerID, &c.ProductID, &c.Activity, &c.Name, &c.URL, &c.KeyType, &params, &body, &resp,
		&c.ResultCode, &c.InstanceID, &c.MessageID, &created, &updated, &dialAt, &dialPassed, &c.LastDialError); err != nil {
		return Case{}, err
	}
	if err := json.Unmarshal([]byte(params), &c.Params); err != nil {
		return Case{}, fmt.Errorf("case %d params: %w", c.ID, err)
	}
	c.Body = json.RawMessage(body)
	if resp != "" && json.Valid([]byte(resp)) {
		c.Response = json.RawMessage(resp)
	}
	c.CreatedAt, c.UpdatedAt, c.LastDialAt, c.LastDialPassed = db.FromMillis(created), db.FromMillis(updated), db.FromMillis(dialAt), dialPassed == 1
	return c, nil
}

// saveCase stores a passing debug call as a case (upsert on product and name).
func (t *Tools) saveCase(ctx context.Context, pr prepared, r Result) (Case, error) {
	params, err := json.Marshal(pr.params)
	if err != nil {
		return Case{}, fmt.Errorf("sellertools: save case: %w", err)
	}
	instanceID := ""
	if pr.iface.Activity == "newInstance" {
		instanceID = r.InstanceID
	}
	now := db.Millis(t.clock.Now())
	var id int64
	err = t.db.QueryRow(ctx, `INSERT INTO sellertools_cases (seller_id, product_id, activity, name, url, key_type, params, body, response,
		result_code, instance_id, message_id, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$13)
		ON CONFLICT (product_id, name) DO UPDATE SET activity = excluded.activity, url = excluded.url, key_type = excluded.key_type,
		params = excluded.params, body = excluded.body, response = excluded.response, result_code = excluded.result_code,
		instance_id = excluded.instance_id, message_id = excluded.message_id, updated_at = excluded.updated_at,
		last_dial_at = 0, last_dial_passed = 0, last_dial_error = ''
		RETURNING id`,
		pr.product.SellerID, pr.product.ID, pr.iface.Activity, pr.name, pr.url, pr.iface.KeyType, string(params), string(pr.body),
		string(r.Response), r.ResultCode, instanceID, r.MessageID, now).Scan(&id)
	if err != nil {
		return Case{}, fmt.Errorf("sellertools: save case: %w", err)
	}
	t.log.InfoContext(ctx, "sellertools: debug case saved", "case", id, "product", pr.product.ID, "activity", pr.iface.Activity, "name", pr.name)
	return t.GetCase(ctx, id)
}

// GetCase returns a saved case.
func (t *Tools) GetCase(ctx context.Context, id int64) (Case, error) {
	c, err := scanCase(t.db.QueryRow(ctx, `SELECT `+caseCols+` FROM sellertools_cases WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Case{}, notFound("debug case", strconv.FormatInt(id, 10))
	}
	if err != nil {
		return Case{}, fmt.Errorf("sellertools: get case: %w", err)
	}
	return c, nil
}

// CaseFilter selects cases; empty fields match everything.
type CaseFilter struct {
	SellerID  string
	ProductID string
	Activity  string
}

// ListCases returns saved cases, by product in replay order.
func (t *Tools) ListCases(ctx context.Context, f CaseFilter) ([]Case, error) {
	rows, err := t.db.Query(ctx, `SELECT `+caseCols+` FROM sellertools_cases
		WHERE ($1 = '' OR seller_id = $1) AND ($2 = '' OR product_id = $2) AND ($3 = '' OR activity = $3)
		ORDER BY product_id, name, id`, f.SellerID, f.ProductID, f.Activity)
	if err != nil {
		return nil, fmt.Errorf("sellertools: list cases: %w", err)
	}
	defer rows.Close()
	var out []Case
	for rows.Next() {
		c, err := scanCase(rows)
		if err != nil {
			return nil, fmt.Errorf("sellertools: list cases: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sellertools: list cases: %w", err)
	}
	sortReplay(out)
	return out, nil
}

// sortReplay orders cases by product, then the replay order of their
// interfaces (creation first, release last), then name.
func sortReplay(cs []Case) {
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.ProductID != b.ProductID {
			return a.ProductID < b.ProductID
		}
		if ra, rb := replayRank(a.Activity), replayRank(b.Activity); ra != rb {
			return ra < rb
		}
		return a.Name < b.Name
	})
}

// DeleteCase deletes a saved case. The product's readiness may drop; a
// product on sale keeps being dial-tested with its remaining cases.
func (t *Tools) DeleteCase(ctx context.Context, id int64) (Case, error) {
	c, err := t.GetCase(ctx, id)
	if err != nil {
		return Case{}, err
	}
	res, err := t.db.Exec(ctx, `DELETE FROM sellertools_cases WHERE id = $1`, id)
	if err != nil {
		return Case{}, fmt.Errorf("sellertools: delete case: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Case{}, notFound("debug case", strconv.FormatInt(id, 10))
	}
	return c, nil
}

// ReadinessItem is one required interface and its saved case.
type ReadinessItem struct {
	Activity string   `json:"activity"`
	Because  []string `json:"because"`
	CaseIDs  []int64  `json:"caseIds"`
	OK       bool     `json:"ok"`
}

// Readiness says whether a product may go on sale: a passing saved case for
// every mandatory interface of its charging modes.
type Readiness struct {
	ProductID string          `json:"productId"`
	Ready     bool            `json:"ready"`
	Items     []ReadinessItem `json:"items"`
	Missing   []string        `json:"missing"`
}

// Readiness checks a product's saved cases against its requirements.
func (t *Tools) Readiness(ctx context.Context, productID string) (Readiness, error) {
	p, err := t.product(ctx, productID)
	if err != nil {
		return Readiness{}, err
	}
	cases, err := t.ListCases(ctx, CaseFilter{ProductID: p.ID})
	if err != nil {
		return Readiness{}, err
	}
	r := Readiness{ProductID: p.ID, Ready: true, Missing: []string{}}
	for _, req := range Requirements(p) {
		it := ReadinessItem{Activity: req.Activity, Because: req.Because, CaseIDs: []int64{}}
		for _, c := range cases {
			if c.Activity == req.Activity {
				it.CaseIDs = append(it.CaseIDs, c.ID)
			}
		}
		it.OK = len(it.CaseIDs) > 0
		if !it.OK {
			r.Ready = false
			r.Missing = append(r.Missing, req.Activity)
		}
		r.Items = append(r.Items, it)
	}
	return r, nil
}

// Listing is a product's sale status and its dial-test failure streak.
type Listing struct {
	ProductID      string    `json:"productId"`
	SellerID       string    `json:"sellerId"`
	Status         string    `json:"status"` // draft | on_sale | frozen | off_sale
	FailStreak     int       `json:"failStreak"`
	StreakStartDay string    `json:"streakStartDay,omitempty"`
	LastFailDay    string    `json:"lastFailDay,omitempty"`
	ListedAt       time.Time `json:"listedAt,omitzero"`
	FrozenAt       time.Time `json:"frozenAt,omitzero"`
	Note           string    `json:"note,omitempty"`
	UpdatedAt      time.Time `json:"updatedAt,omitzero"`
}

const listingCols = `product_id, seller_id, status, fail_streak, streak_start_day, last_fail_day, listed_at, frozen_at, note, updated_at`

func scanListing(s scanner) (Listing, error) {
	var l Listing
	var listed, frozen, updated int64
	if err := s.Scan(&l.ProductID, &l.SellerID, &l.Status, &l.FailStreak, &l.StreakStartDay, &l.LastFailDay, &listed, &frozen,
		&l.Note, &updated); err != nil {
		return Listing{}, err
	}
	l.ListedAt, l.FrozenAt, l.UpdatedAt = db.FromMillis(listed), db.FromMillis(frozen), db.FromMillis(updated)
	return l, nil
}

type queryer interface {
	QueryRow(ctx context.Context, query string, args ...any) *sql.Row
}

func getListing(ctx context.Context, q queryer, productID, sellerID string, forUpdate bool) (Listing, error) {
	lock := ""
	if forUpdate {
		lock = " FOR UPDATE"
	}
	l, err := scanListing(q.QueryRow(ctx, `SELECT `+listingCols+` FROM sellertools_listings WHERE product_id = $1`+lock, productID))
	if errors.Is(err, sql.ErrNoRows) {
		return Listing{ProductID: productID, SellerID: sellerID, Status: StatusDraft}, nil
	}
	if err != nil {
		return Listing{}, fmt.Errorf("sellertools: listing: %w", err)
	}
	return l, nil
}

// Status returns a product's listing (draft when it was never put on sale).
func (t *Tools) Status(ctx context.Context, productID string) (Listing, error) {
	p, err := t.product(ctx, productID)
	if err != nil {
		return Listing{}, err
	}
	return getListing(ctx, t.db, p.ID, p.SellerID, false)
}

// ListListings returns the listings of a seller's products (all sellers when
// empty), draft products included.
func (t *Tools) ListListings(ctx context.Context, sellerID string) ([]Listing, error) {
	ps, err := t.m.ListProducts(ctx, sellerID)
	if err != nil {
		return nil, err
	}
	out := make([]Listing, 0, len(ps))
	for _, p := range ps {
		l, err := getListing(ctx, t.db, p.ID, p.SellerID, false)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

func (t *Tools) upsertListing(ctx context.Context, tx *db.Tx, l Listing) error {
	_, err := tx.Exec(ctx, `INSERT INTO sellertools_listings (product_id, seller_id, status, fail_streak, streak_start_day, last_fail_day,
		listed_at, frozen_at, note, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)
		ON CONFLICT (product_id) DO UPDATE SET status = excluded.status, fail_streak = excluded.fail_streak,
		streak_start_day = excluded.streak_start_day, last_fail_day = excluded.last_fail_day, listed_at = excluded.listed_at,
		frozen_at = excluded.frozen_at, note = excluded.note, updated_at = excluded.updated_at`,
		l.ProductID, l.SellerID, l.Status, l.FailStreak, l.StreakStartDay, l.LastFailDay, db.Millis(l.ListedAt), db.Millis(l.FrozenAt), l.Note, db.Millis(l.UpdatedAt))
	if err != nil {
		return fmt.Errorf("sellertools: save listing: %w", err)
	}
	return nil
}

// PutOnSale puts a product on sale (上架) once it is ready: a passing saved
// case for every mandatory interface. From then on it is dial-tested. A
// frozen product must be unfrozen (Unfreeze) instead.
func (t *Tools) PutOnSale(ctx context.Context, productID string) (Listing, error) {
	r, err := t.Readiness(ctx, productID)
	if err != nil {
		return Listing{}, err
	}
	if !r.Ready {
		return Listing{}, refused("product %s is not ready for sale: save passing debug cases for %v first", productID, r.Missing)
	}
	out, err := t.changeListing(ctx, productID, "put on sale", func(l *Listing, now time.Time) (bool, error) {
		switch l.Status {
		case StatusOnSale:
			return false, nil
		case StatusFrozen:
			return false, conflict("product %s is frozen by failing dial tests; fix the merchant and unfreeze it", l.ProductID)
		}
		l.Status, l.FailStreak, l.StreakStartDay, l.LastFailDay = StatusOnSale, 0, "", ""
		l.ListedAt, l.FrozenAt, l.Note, l.UpdatedAt = now, time.Time{}, "put on sale", now
		return true, nil
	})
	if err != nil {
		return Listing{}, err
	}
	if _, err := t.EnsureSchedule(ctx); err != nil {
		return out, err
	}
	return out, nil
}

// TakeOffSale takes a product off sale (下架); dial tests stop.
func (t *Tools) TakeOffSale(ctx context.Context, productID, note string) (Listing, error) {
	return t.changeListing(ctx, productID, "take off sale", func(l *Listing, now time.Time) (bool, error) {
		if l.Status == StatusDraft {
			return false, conflict("product %s was never put on sale", l.ProductID)
		}
		if note == "" {
			note = "taken off sale"
		}
		l.Status, l.Note, l.UpdatedAt = StatusOffSale, note, now
		return true, nil
	})
}

// changeListing applies change to productID's listing in one transaction,
// with the row locked on PostgreSQL, and stores it when change reports a
// change. It returns the listing as changed (or as found). what names the
// operation in wrapped errors; *market.Error is returned as is.
func (t *Tools) changeListing(ctx context.Context, productID, what string, change func(l *Listing, now time.Time) (changed bool, err error)) (Listing, error) {
	p, err := t.product(ctx, productID)
	if err != nil {
		return Listing{}, err
	}
	var out Listing
	err = t.db.Tx(ctx, func(tx *db.Tx) error {
		l, err := getListing(ctx, tx, p.ID, p.SellerID, tx.Dialect == db.Postgres)
		if err != nil {
			return err
		}
		changed, err := change(&l, t.clock.Now().UTC())
		if err != nil {
			return err
		}
		out = l
		if !changed {
			return nil
		}
		return t.upsertListing(ctx, tx, l)
	})
	if err != nil {
		if isMarketError(err) {
			return Listing{}, err
		}
		return Listing{}, fmt.Errorf("sellertools: %s: %w", what, err)
	}
	return out, nil
}

// CheckPurchasable is the check the market core makes before a purchase (and
// before showing a product in the catalog): nil when the product may be
// bought, a refused *market.Error when its transactions are frozen by failing
// dial tests or it is off sale (and, with Options.RequireOnSale, when it was
// never put on sale).
func (t *Tools) CheckPurchasable(ctx context.Context, productID string) error {
	p, err := t.product(ctx, productID)
	if err != nil {
		return err
	}
	l, err := getListing(ctx, t.db, p.ID, p.SellerID, false)
	if err != nil {
		return err
	}
	switch l.Status {
	case StatusFrozen:
		return refused("product %s is frozen: its dial tests failed %d days in a row (since %s); transactions are suspended", p.ID, l.FailStreak, l.StreakStartDay)
	case StatusOffSale:
		return refused("product %s is off sale", p.ID)
	case StatusDraft:
		if t.requireOnSale {
			return refused("product %s is not on sale", p.ID)
		}
	}
	return nil
}
