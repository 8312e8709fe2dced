package buyer

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
)

// Kit interfaces (joint-kit.md §2–5).
const (
	IfaceTenantSync      = "tenantSync"
	IfaceApplicationSync = "applicationSync"
	IfaceAuthSync        = "authSync"
	IfaceSingleOrgSync   = "singleOrgSync"
	IfaceAllOrgSync      = "allOrgSync"
)

// Kit flags.
const (
	FlagDelete = 0
	FlagAdd    = 1
	FlagModify = 2
	FlagCancel = 3 // authSync only: 取消授权
)

// Message states.
const (
	StatePending   = "pending"
	StateSending   = "sending"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

// KitUser is one entry of authSync's userList (V2: a JSON array of objects).
type KitUser struct {
	UserName     string `json:"userName"`
	Name         string `json:"name"`
	OrgCode      string `json:"orgCode"`
	Position     string `json:"position,omitempty"`
	EmployeeCode string `json:"employeeCode,omitempty"`
	EmployeeType int    `json:"employeeType,omitempty"`
	Role         string `json:"role"`
	Enable       string `json:"enable"` // "true" | "false" (a string, as documented)
	Mobile       string `json:"mobile,omitempty"`
	Email        string `json:"email,omitempty"`
	WorkPlace    string `json:"workPlace,omitempty"`
	EntryDate    string `json:"entryDate,omitempty"`
}

// OrgInfo is one entry of allOrgSync's orgInfoList.
type OrgInfo struct {
	OrgCode    string `json:"orgCode"`
	OrgName    string `json:"orgName"`
	ParentCode string `json:"parentCode"`
}

type tenantSyncBody struct {
	InstanceID string `json:"instanceId"`
	OrderID    string `json:"orderId"`
	TenantID   string `json:"tenantId"`
	TenantCode string `json:"tenantCode"`
	Name       string `json:"name"`
	DomainName string `json:"domainName"`
	Flag       int    `json:"flag"`
	TestFlag   int    `json:"testFlag"`
	TimeStamp  string `json:"timeStamp"`
}

type applicationSyncBody struct {
	InstanceID   string `json:"instanceId"`
	TenantID     string `json:"tenantId"`
	AppID        string `json:"appId"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	Flag         int    `json:"flag"`
	TestFlag     int    `json:"testFlag"`
	TimeStamp    string `json:"timeStamp"`
}

type authSyncBody struct {
	InstanceID      string    `json:"instanceId"`
	TenantID        string    `json:"tenantId"`
	AppID           string    `json:"appId"`
	UserList        []KitUser `json:"userList"`
	CurrentSyncTime string    `json:"currentSyncTime"`
	Flag            int       `json:"flag"`
	TestFlag        int       `json:"testFlag"`
	TimeStamp       string    `json:"timeStamp"`
}

type singleOrgSyncBody struct {
	InstanceID string `json:"instanceId"`
	TenantID   string `json:"tenantId"`
	OrgCode    string `json:"orgCode"`
	OrgName    string `json:"orgName"`
	ParentCode string `json:"parentCode"`
	Flag       int    `json:"flag"`
	TestFlag   int    `json:"testFlag"`
	TimeStamp  string `json:"timeStamp"`
}

type allOrgSyncBody struct {
	InstanceID  string    `json:"instanceId"`
	TenantID    string    `json:"tenantId"`
	OrgInfoList []OrgInfo `json:"orgInfoList"`
	TestFlag    int       `json:"testFlag"`
	TimeStamp   string    `json:"timeStamp"`
}

// Message is one kit sync call in the log.
type Message struct {
	ID           int64           `json:"id"`
	EnterpriseID string          `json:"enterpriseId"`
	BindingID    string          `json:"bindingId"`
	InstanceID   string          `json:"instanceId"`
	SellerID     string          `json:"sellerId,omitempty"`
	ProductID    string          `json:"productId,omitempty"` // seller debugging calls only
	Batch        string          `json:"batch"`
	Seq          int             `json:"seq"`
	Interface    string          `json:"interface"`
	Flag         int             `json:"flag"` // -1 for allOrgSync (no flag)
	Body         json.RawMessage `json:"body"`
	State        string          `json:"state"`
	Attempts     int             `json:"attempts"`
	LastCode     string          `json:"lastCode,omitempty"`
	LastError    string          `json:"lastError,omitempty"`
	CreatedAt    time.Time       `json:"createdAt"`
	UpdatedAt    time.Time       `json:"updatedAt"`
	AttemptLog   []Attempt       `json:"attemptLog,omitempty"`
}

// Attempt is one try of a message.
type Attempt struct {
	Attempt    int       `json:"attempt"`
	At         time.Time `json:"at"`
	URL        string    `json:"url"`
	HTTPStatus int       `json:"httpStatus"`
	Response   string    `json:"response"`
	ResultCode string    `json:"resultCode,omitempty"`
	Verdict    string    `json:"verdict"` // success | failure
	Error      string    `json:"error,omitempty"`
	LatencyMS  int64     `json:"latencyMs"`
	Manual     bool      `json:"manual"`
}

// bindingRef is what the outbox needs to address a message: a binding, or
// (seller debugging) a product.
type bindingRef struct {
	ID, EnterpriseID, InstanceID, OrderID, SellerID, AppID string
	ProductID                                              string
	TestFlag                                               bool
}

// outbox collects the messages of one change, inside its transaction.
type outbox struct {
	c     *Center
	tx    *db.Tx
	now   time.Time
	batch string
	seq   int
	ids   []int64
	lane  string
}

func (c *Center) newOutbox(tx *db.Tx, now time.Time) (*outbox, error) {
	b, err := c.randomHex(12)
	if err != nil {
		return nil, err
	}
	return &outbox{c: c, tx: tx, now: now, batch: b}, nil
}

// encodeBody marshals a kit body without HTML escaping and with its
// top-level keys sorted (kg.KitBody), so the raw and the sorted x-sign
// readings coincide.
func encodeBody(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return kg.KitBody(bytes.TrimRight(buf.Bytes(), "\n"))
}

func (o *outbox) add(ctx context.Context, b bindingRef, iface string, flag int, body any) error {
	raw, err := encodeBody(body)
	if err != nil {
		return fmt.Errorf("buyer: encode %s: %w", iface, err)
	}
	o.seq++
	var id int64
	err = o.tx.QueryRow(ctx, `INSERT INTO buyer_kit_messages (enterprise_id, binding_id, instance_id, seller_id, batch, seq, iface, flag, body,
		state, created_at, updated_at, product_id, lane) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'pending',$10,$10,$11,$12) RETURNING id`,
		b.EnterpriseID, b.ID, b.InstanceID, b.SellerID, o.batch, o.seq, iface, flag, string(raw), db.Millis(o.now), b.ProductID, laneOf(b)).Scan(&id)
	if err != nil {
		return fmt.Errorf("buyer: log %s: %w", iface, err)
	}
	o.ids = append(o.ids, id)
	o.lane = laneOf(b)
	return nil
}

func testFlag(b bindingRef) int { return db.Bool(b.TestFlag) }

// tenantOf is the tenantId of a message: the enterprise, or the debugging tenant.
func tenantOf(b bindingRef) string {
	if b.EnterpriseID == "" && b.ProductID != "" {
		return DebugTenantID
	}
	return b.EnterpriseID
}

func (o *outbox) tenantSync(ctx context.Context, b bindingRef, e Enterprise, flag int) error {
	return o.add(ctx, b, IfaceTenantSync, flag, tenantSyncBody{
		InstanceID: b.InstanceID, OrderID: b.OrderID, TenantID: e.ID, TenantCode: e.Code, Name: e.Name,
		DomainName: e.DomainName, Flag: flag, TestFlag: testFlag(b), TimeStamp: kg.FormatKitTimeStamp(o.now),
	})
}

func (o *outbox) applicationSync(ctx context.Context, b bindingRef, clientID, encSecret string, flag int) error {
	return o.add(ctx, b, IfaceApplicationSync, flag, applicationSyncBody{
		InstanceID: b.InstanceID, TenantID: tenantOf(b), AppID: b.AppID, ClientID: clientID, ClientSecret: encSecret,
		Flag: flag, TestFlag: testFlag(b), TimeStamp: kg.FormatKitTimeStamp(o.now),
	})
}

func (o *outbox) allOrgSync(ctx context.Context, b bindingRef, orgs []OrgInfo) error {
	if orgs == nil {
		orgs = []OrgInfo{}
	}
	return o.add(ctx, b, IfaceAllOrgSync, -1, allOrgSyncBody{
		InstanceID: b.InstanceID, TenantID: tenantOf(b), OrgInfoList: orgs, TestFlag: testFlag(b), TimeStamp: kg.FormatKitTimeStamp(o.now),
	})
}

func (o *outbox) singleOrgSync(ctx context.Context, b bindingRef, d Department, flag int) error {
	return o.add(ctx, b, IfaceSingleOrgSync, flag, singleOrgSyncBody{
		InstanceID: b.InstanceID, TenantID: tenantOf(b), OrgCode: d.OrgCode, OrgName: d.OrgName, ParentCode: d.ParentCode,
		Flag: flag, TestFlag: testFlag(b), TimeStamp: kg.FormatKitTimeStamp(o.now),
	})
}

// authSync emits users in calls of at most MaxUsersPerAuthSync.
func (o *outbox) authSync(ctx context.Context, b bindingRef, users []KitUser, flag int) error {
	ts := kg.FormatKitTimeStamp(o.now)
	for len(users) > 0 {
		n := min(len(users), MaxUsersPerAuthSync)
		if err := o.add(ctx, b, IfaceAuthSync, flag, authSyncBody{
			InstanceID: b.InstanceID, TenantID: tenantOf(b), AppID: b.AppID, UserList: users[:n],
			CurrentSyncTime: ts, Flag: flag, TestFlag: testFlag(b), TimeStamp: ts,
		}); err != nil {
			return err
		}
		users = users[n:]
	}
	return nil
}

// laneOf is the delivery lane of a message: its enterprise, or the seller
// for debugging calls.
func laneOf(b bindingRef) string {
	if b.EnterpriseID != "" {
		return b.EnterpriseID
	}
	return "debug:" + b.SellerID
}

// change runs fn in a transaction with an outbox, then sends the messages it
// queued, once each, in order. The change stands whatever the sends return;
// the returned messages carry their outcome.
//
// A change of an enterprise first locks the enterprise's row, so that the
// changes of one enterprise commit one after the other: each reconciles
// against the state the previous one left, and message ids follow commit
// order. The calls of an enterprise are then sent in id order, one at a
// time, by whichever process gets to them (deliver).
func (c *Center) change(ctx context.Context, enterpriseID string, fn func(ctx context.Context, tx *db.Tx, now time.Time, o *outbox) error) ([]Message, error) {
	var (
		ids  []int64
		lane string
	)
	err := c.db.Tx(ctx, func(tx *db.Tx) error {
		if enterpriseID != "" {
			res, err := tx.Exec(ctx, `UPDATE buyer_enterprises SET updated_at = updated_at WHERE id = $1`, enterpriseID)
			if err != nil {
				return fmt.Errorf("buyer: lock enterprise: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return notFound("enterprise %q not found", enterpriseID)
			}
		}
		o, err := c.newOutbox(tx, c.clock.Now())
		if err != nil {
			return err
		}
		if err := fn(ctx, tx, o.now, o); err != nil {
			return err
		}
		ids, lane = o.ids, o.lane
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c.deliver(ctx, lane, ids)
}

// deliver sends the lane's pending messages in id order until ids are all
// attempted (by this process or another one delivering the same lane), and
// returns ids' messages as they end up.
func (c *Center) deliver(ctx context.Context, lane string, ids []int64) ([]Message, error) {
	if len(ids) == 0 {
		return []Message{}, nil
	}
	// The change is committed: finish sending even if the caller goes away.
	ctx = context.WithoutCancel(ctx)
	// Bounded wait for calls of the lane in flight elsewhere.
	deadline := time.Now().Add(time.Duration(len(ids)+1)*(c.timeout+time.Second) + staleSending)
	for {
		sent, err := c.sendNext(ctx, lane)
		if err != nil {
			return nil, err
		}
		if sent {
			continue
		}
		var left int
		q := `SELECT COUNT(*) FROM buyer_kit_messages WHERE lane = $1 AND state = 'pending' AND id <= $2`
		if err := c.db.QueryRow(ctx, q, lane, ids[len(ids)-1]).Scan(&left); err != nil {
			return nil, fmt.Errorf("buyer: pending messages: %w", err)
		}
		if left == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // another process is sending the lane's current call
	}
	out := make([]Message, 0, len(ids))
	for _, id := range ids {
		m, err := c.getMessage(ctx, "", id, false)
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Retry sends a failed (or never sent) message of the enterprise again, once,
// now — the buyer's choice to retry (joint-kit.md §1.3).
func (c *Center) Retry(ctx context.Context, enterpriseID string, id int64) (Message, error) {
	if _, err := c.getMessage(ctx, enterpriseID, id, false); err != nil {
		return Message{}, err
	}
	if _, err := c.send(context.WithoutCancel(ctx), id, true); err != nil {
		return Message{}, err
	}
	return c.getMessage(ctx, enterpriseID, id, true)
}

// RetrySeller is Retry for a seller: a message sent to sellerID (its
// debugging calls included).
func (c *Center) RetrySeller(ctx context.Context, sellerID string, id int64) (Message, error) {
	m, err := c.getMessage(ctx, "", id, false)
	if err != nil {
		return Message{}, err
	}
	if m.SellerID != sellerID {
		return Message{}, notFound("message %d not found", id)
	}
	if _, err := c.send(context.WithoutCancel(ctx), id, true); err != nil {
		return Message{}, err
	}
	return c.getMessage(ctx, "", id, true)
}

// DeliverPending sends every message still pending (never attempted: the
// process stopped between a change's commit and its sends), lane by lane in
// order. Call it at start. It returns how many it sent.
func (c *Center) DeliverPending(ctx context.Context) (int, error) {
	rows, err := c.db.Query(ctx, `SELECT DISTINCT lane FROM buyer_kit_messages WHERE state = 'pending'`)
	if err != nil {
		return 0, fmt.Errorf("buyer: pending lanes: %w", err)
	}
	var lanes []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			rows.Close()
			return 0, fmt.Errorf("buyer: pending lanes: %w", err)
		}
		lanes = append(lanes, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("buyer: pending lanes: %w", err)
	}
	n := 0
	for _, l := range lanes {
		for {
			sent, err := c.sendNext(ctx, l)
			if err != nil {
				return n, err
			}
			if !sent {
				break
			}
			n++
		}
	}
	return n, nil
}

// claimed is a message taken for one attempt.
type claimed struct {
	id                                 int64
	attempt                            int
	instanceID, productID, iface, body string
}

// Leases of claimed messages follow real time (like the jobs package's):
// they are about processes dying, not about the market's virtual time.
func leaseNow() int64 { return time.Now().UnixMilli() }

// sendNext claims the lane's oldest pending message, unless a call of the
// lane is in flight, and attempts it. It reports whether it sent one.
func (c *Center) sendNext(ctx context.Context, lane string) (bool, error) {
	now := leaseNow()
	var m claimed
	err := c.db.QueryRow(ctx, `UPDATE buyer_kit_messages SET state = 'sending', attempts = attempts + 1, claimed_at = $1, updated_at = $2
		WHERE id = (SELECT MIN(id) FROM buyer_kit_messages WHERE lane = $3 AND state = 'pending') AND state = 'pending'
		AND NOT EXISTS (SELECT 1 FROM buyer_kit_messages s WHERE s.lane = $3 AND s.state = 'sending' AND s.claimed_at >= $4)
		RETURNING id, attempts, instance_id, product_id, iface, body`,
		now, db.Millis(c.clock.Now()), lane, now-staleSending.Milliseconds()).Scan(&m.id, &m.attempt, &m.instanceID, &m.productID, &m.iface, &m.body)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("buyer: claim the next message of %s: %w", lane, err)
	}
	return true, c.attempt(ctx, m, false)
}

// send claims message id for a manual attempt: it must be pending, failed,
// or left sending by a process that died (its lease ran out).
func (c *Center) send(ctx context.Context, id int64, manual bool) (bool, error) {
	now := leaseNow()
	var m claimed
	err := c.db.QueryRow(ctx, `UPDATE buyer_kit_messages SET state = 'sending', attempts = attempts + 1, claimed_at = $1, updated_at = $2
		WHERE id = $3 AND (state IN ('pending','failed') OR (state = 'sending' AND claimed_at < $4))
		RETURNING id, attempts, instance_id, product_id, iface, body`,
		now, db.Millis(c.clock.Now()), id, now-staleSending.Milliseconds()).Scan(&m.id, &m.attempt, &m.instanceID, &m.productID, &m.iface, &m.body)
	if errors.Is(err, sql.ErrNoRows) {
		return false, conflict("message %d has already succeeded or is being sent", id)
	}
	if err != nil {
		return false, fmt.Errorf("buyer: claim message %d: %w", id, err)
	}
	return true, c.attempt(ctx, m, manual)
}

// attempt makes the call of a claimed message and records it.
func (c *Center) attempt(ctx context.Context, m claimed, manual bool) error {
	at := Attempt{Attempt: m.attempt, At: c.clock.Now(), Manual: manual, Verdict: "failure"}
	c.call(ctx, m.instanceID, m.productID, m.iface, []byte(m.body), &at)
	state := StateFailed
	if at.Verdict == "success" {
		state = StateSucceeded
	}
	err := c.db.Tx(ctx, func(tx *db.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO buyer_kit_attempts (message_id, attempt, at, url, http_status, response_body, result_code,
			verdict, error, latency_ms, manual) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT (message_id, attempt) DO NOTHING`,
			m.id, m.attempt, db.Millis(at.At), at.URL, at.HTTPStatus, at.Response, at.ResultCode, at.Verdict, at.Error, at.LatencyMS, db.Bool(manual)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE buyer_kit_messages SET state = $1, last_code = $2, last_error = $3, updated_at = $4 WHERE id = $5 AND attempts = $6`,
			state, at.ResultCode, at.Error, db.Millis(c.clock.Now()), m.id, m.attempt)
		return err
	})
	if err != nil {
		return fmt.Errorf("buyer: record message %d: %w", m.id, err)
	}
	lvl := c.log.Info
	if state == StateFailed {
		lvl = c.log.Warn
	}
	lvl("buyer: kit call", "message", m.id, "interface", m.iface, "attempt", m.attempt, "manual", manual,
		"verdict", at.Verdict, "resultCode", at.ResultCode, "http", at.HTTPStatus, "err", at.Error)
	return nil
}

// call makes one signed HTTP call and fills in the attempt.
func (c *Center) call(ctx context.Context, instanceID, productID, iface string, body []byte, at *Attempt) {
	var (
		app App
		err error
	)
	switch pc, ok := c.catalog.(ProductCatalog); {
	case instanceID != "" || productID == "":
		app, err = c.catalog.App(ctx, instanceID)
	case ok:
		app, err = pc.Product(ctx, productID)
	default:
		err = errors.New("the catalog cannot resolve products")
	}
	if err != nil {
		at.Error = "resolving the app: " + err.Error()
		return
	}
	if app.Endpoint == "" || app.KitKey == "" {
		at.Error = "the seller has no production address or no kit key"
		return
	}
	at.URL, err = kitURL(app.Endpoint, iface)
	if err != nil {
		at.Error = err.Error()
		return
	}
	nonce, err := c.randomHex(32)
	if err != nil {
		at.Error = err.Error()
		return
	}
	ts := kg.FormatTimestampMillis(c.wire.Now())
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, at.URL, bytes.NewReader(body))
	if err != nil {
		at.Error = "building the request: " + err.Error()
		return
	}
	req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	req.Header.Set("Accept", "application/json")
	nonce = strings.ToUpper(nonce) // as in the documented examples
	req.Header.Set("x-sign", kg.KitSign(app.KitKey, nonce, ts, body))
	req.Header.Set("x-timestamp", ts)
	req.Header.Set("x-nonce", nonce)
	start := time.Now() // latency in real time, whatever the market clock says
	resp, err := c.client.Do(req)
	if err != nil {
		at.LatencyMS = time.Since(start).Milliseconds()
		if errors.Is(err, context.DeadlineExceeded) {
			at.Error = fmt.Sprintf("timeout: no answer within %s", c.timeout)
		} else {
			at.Error = "transport: " + err.Error()
		}
		return
	}
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	resp.Body.Close()
	at.LatencyMS = time.Since(start).Milliseconds()
	at.HTTPStatus = resp.StatusCode
	if len(data) > maxResponse {
		data = data[:maxResponse]
		rerr = errors.New("answer larger than 64 KiB")
	}
	at.Response = string(data)
	if rerr != nil {
		at.Error = "reading the answer: " + rerr.Error()
		return
	}
	at.ResultCode, at.Error = judgeAnswer(resp.StatusCode, data)
	if at.Error == "" {
		at.Verdict = "success"
	}
}

// kitURL appends the fixed sub-path /produceAPI/v2/<iface> to the production
// address's path, keeping any query it has.
func kitURL(endpoint, iface string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("the production address %q is not an absolute http(s) URL", endpoint)
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/produceAPI/v2/" + iface
	u.RawPath = ""
	u.Fragment = ""
	return u.String(), nil
}

// judgeAnswer reads a merchant's answer to a kit call: success is HTTP 200
// with resultCode "000000" (a string, or a number the merchant printed
// without quotes). It returns the result code found and, unless the call
// succeeded, why it failed.
func judgeAnswer(status int, data []byte) (code, failure string) {
	var r struct {
		ResultCode json.RawMessage `json:"resultCode"`
		ResultMsg  json.RawMessage `json:"resultMsg"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		if status != http.StatusOK {
			return "", fmt.Sprintf("HTTP status %d", status)
		}
		return "", "the answer is not a JSON object"
	}
	code = lenientCode(r.ResultCode)
	var msg string
	_ = json.Unmarshal(r.ResultMsg, &msg)
	switch {
	case status != http.StatusOK:
		return code, fmt.Sprintf("HTTP status %d (KooGallery expects 200 with a resultCode)", status)
	case code == "":
		return "", "the answer has no resultCode"
	case code != kg.CodeSuccess:
		failure = "resultCode " + code
		if msg != "" {
			failure += ": " + msg
		}
		return code, failure
	}
	return code, ""
}

// lenientCode reads a resultCode given as a string or a number.
func lenientCode(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if v := n.String(); len(v) <= 6 && strings.Trim(v, "0123456789") == "" {
			return strings.Repeat("0", 6-len(v)) + v
		}
		return n.String()
	}
	return ""
}

const messageCols = `id, enterprise_id, binding_id, instance_id, seller_id, batch, seq, iface, flag, body, state, attempts, last_code, last_error,
	created_at, updated_at, product_id`

type scanner interface{ Scan(dest ...any) error }

func scanMessage(s scanner) (Message, error) {
	var m Message
	var body string
	var created, updated int64
	if err := s.Scan(&m.ID, &m.EnterpriseID, &m.BindingID, &m.InstanceID, &m.SellerID, &m.Batch, &m.Seq, &m.Interface, &m.Flag, &body,
		&m.State, &m.Attempts, &m.LastCode, &m.LastError, &created, &updated, &m.ProductID); err != nil {
		return Message{}, err
	}
	m.Body = json.RawMessage(body)
	m.CreatedAt, m.UpdatedAt = db.FromMillis(created), db.FromMillis(updated)
	return m, nil
}

// getMessage loads a message (of enterpriseID unless it is "").
func (c *Center) getMessage(ctx context.Context, enterpriseID string, id int64, withAttempts bool) (Message, error) {
	m, err := scanMessage(c.db.QueryRow(ctx, `SELECT `+messageCols+` FROM buyer_kit_messages WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && enterpriseID != "" && m.EnterpriseID != enterpriseID) {
		return Message{}, notFound("message %d not found", id)
	}
	if err != nil {
		return Message{}, fmt.Errorf("buyer: message %d: %w", id, err)
	}
	if !withAttempts {
		return m, nil
	}
	rows, err := c.db.Query(ctx, `SELECT attempt, at, url, http_status, response_body, result_code, verdict, error, latency_ms, manual
		FROM buyer_kit_attempts WHERE message_id = $1 ORDER BY attempt`, id)
	if err != nil {
		return Message{}, fmt.Errorf("buyer: attempts of %d: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Attempt
		var at int64
		var manual int
		if err := rows.Scan(&a.Attempt, &at, &a.URL, &a.HTTPStatus, &a.Response, &a.ResultCode, &a.Verdict, &a.Error, &a.LatencyMS, &manual); err != nil {
			return Message{}, fmt.Errorf("buyer: attempts of %d: %w", id, err)
		}
		a.At, a.Manual = db.FromMillis(at), manual == 1
		m.AttemptLog = append(m.AttemptLog, a)
	}
	if err := rows.Err(); err != nil {
		return Message{}, fmt.Errorf("buyer: attempts of %d: %w", id, err)
	}
	return m, nil
}

// Message returns a message of the enterprise with its attempts.
func (c *Center) Message(ctx context.Context, enterpriseID string, id int64) (Message, error) {
	return c.getMessage(ctx, enterpriseID, id, true)
}

// MessageFilter selects messages.
type MessageFilter struct {
	State     string // "" = any
	Interface string // "" = any
	BindingID string // "" = any
	Limit     int    // default 100, at most 1000
}

// Messages lists the enterprise's kit messages, newest first.
func (c *Center) Messages(ctx context.Context, enterpriseID string, f MessageFilter) ([]Message, error) {
	return c.listMessages(ctx, "enterprise_id", enterpriseID, f)
}

// SellerMessages lists the kit messages sent to one seller, newest first:
// KooGallery tells the merchant when a kit call fails; this is its view.
func (c *Center) SellerMessages(ctx context.Context, sellerID string, f MessageFilter) ([]Message, error) {
	return c.listMessages(ctx, "seller_id", sellerID, f)
}

func (c *Center) listMessages(ctx context.Context, col, val string, f MessageFilter) ([]Message, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	q := `SELECT ` + messageCols + ` FROM buyer_kit_messages WHERE ` + col + ` = $1`
	args := []any{val}
	if f.State != "" {
		args = append(args, f.State)
		q += fmt.Sprintf(" AND state = $%d", len(args))
	}
	if f.Interface != "" {
		args = append(args, f.Interface)
		q += fmt.Sprintf(" AND iface = $%d", len(args))
	}
	if f.BindingID != "" {
		args = append(args, f.BindingID)
		q += fmt.Sprintf(" AND binding_id = $%d", len(args))
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := c.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("buyer: messages: %w", err)
	}
	defer rows.Close()
	out := []Message{}
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("buyer: messages: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("buyer: messages: %w", err)
	}
	return out, nil
}
