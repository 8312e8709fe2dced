package market

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/kg"
)

// Policy is KooGallery's retry policy for one activity: after a failed
// attempt n (1-based) the next one is due at firstTry + n×Interval, as long as
// that is within firstTry + Window. A zero Interval or Window means a single
// attempt. A manual restart always makes one attempt.
type Policy struct {
	Interval time.Duration `json:"interval"`
	Window   time.Duration `json:"window"`
}

// next returns when the attempt after attempt n is due, and whether there is one.
func (p Policy) next(first time.Time, n int) (time.Time, bool) {
	if p.Interval <= 0 || p.Window <= 0 {
		return time.Time{}, false
	}
	t := first.Add(time.Duration(n) * p.Interval)
	if t.After(first.Add(p.Window)) {
		return time.Time{}, false
	}
	return t, true
}

// MarshalJSON writes durations as Go duration strings.
func (p Policy) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Interval string `json:"interval"`
		Window   string `json:"window"`
	}{p.Interval.String(), p.Window.String()})
}

// UnmarshalJSON reads durations as Go duration strings.
func (p *Policy) UnmarshalJSON(b []byte) error {
	var v struct{ Interval, Window string }
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	var err error
	if p.Interval, err = time.ParseDuration(v.Interval); err != nil {
		return fmt.Errorf("policy interval: %w", err)
	}
	if p.Window, err = time.ParseDuration(v.Window); err != nil {
		return fmt.Errorf("policy window: %w", err)
	}
	return nil
}

// ActivityPoll is the policy name of the queryInstance polling that follows a
// newInstance answered 000004.
const ActivityPoll = "queryInstance.poll"

// DefaultPolicies returns the documented retry policies (README policy 8;
// saas-v2.md §8.1). Where the documentation gives a window but no interval
// (refresh, status, release: "retried for 1 hour") souk retries every 15
// minutes; the queryInstance polling after 000004 runs every minute for the
// 3 hours the create window lasts.
func DefaultPolicies() map[string]Policy {
	hourly3h := Policy{Interval: time.Hour, Window: 3 * time.Hour}
	oneHour := Policy{Interval: 15 * time.Minute, Window: time.Hour}
	licenseCode := Policy{Interval: 2 * time.Minute, Window: 118 * time.Minute}
	return map[string]Policy{
		"newInstance":          hourly3h,
		"upgradeInstance":      hourly3h,
		"orderNotify":          hourly3h,
		"refreshInstance":      oneHour,
		"updateInstanceStatus": oneHour,
		"releaseInstance":      oneHour,
		ActivityPoll:           {Interval: time.Minute, Window: 3 * time.Hour},
		// License 2.0 license-code callbacks: up to 60 calls, one every 2
		// minutes (license-api-agents.md; README policy 8): 0, 2, …, 118 min.
		"refreshLicenseCode":      licenseCode,
		"updateLicenseCodeStatus": licenseCode,
		"releaseLicenseCode":      licenseCode,
		// queryInstance (buyer view), changeInstanceCheck and the kit syncs
		// are not retried: a single attempt.
	}
}

func (m *Market) policy(name string) Policy { return m.policies[name] }

// Effect is what the success (or the final failure) of a message means to the
// lifecycle engine. It is stored with the message.
type Effect struct {
	Kind           string `json:"kind"` // provision | poll | renew | upgrade | release | status | notify | none
	OrderID        string `json:"orderId,omitempty"`
	SubscriptionID string `json:"subscriptionId,omitempty"`
	ProductCode    string `json:"productId,omitempty"`
	SKUCode        string `json:"skuCode,omitempty"`
	Linear         int64  `json:"linearValue,omitempty"`
	InstanceID     string `json:"instanceId,omitempty"`
}

// Outbound is a production-interface call to make.
type Outbound struct {
	SellerID       string
	SubscriptionID string // messages of one subscription are delivered in order
	OrderID        string
	Activity       string // the body's activity (for the log and the policy)
	URL            string // the production address (kit: address + sub-path)
	KeyType        string // whose key signs it; default basic
	Body           []byte // the exact JSON body
	Effect         Effect
	PolicyName     string // default Activity
	Force          bool   // deliver now, not queued behind the subscription's open messages
}

// Message is one production-interface message (生产接口消息) and its state.
type Message struct {
	ID             int64           `json:"id"`
	SellerID       string          `json:"sellerId"`
	SubscriptionID string          `json:"subscriptionId,omitempty"`
	OrderID        string          `json:"orderId,omitempty"`
	Activity       string          `json:"activity"`
	URL            string          `json:"url"`
	KeyType        string          `json:"keyType"`
	Body           json.RawMessage `json:"body"`
	Effect         Effect          `json:"effect"`
	Policy         Policy          `json:"policy"`
	PolicyName     string          `json:"policyName"`
	State          string          `json:"state"` // queued | pending | sending | succeeded | failed
	Attempts       int             `json:"attempts"`
	FirstTryAt     time.Time       `json:"firstTryAt,omitzero"`
	NextTryAt      time.Time       `json:"nextTryAt,omitzero"`
	LastCode       string          `json:"lastCode,omitempty"`
	LastError      string          `json:"lastError,omitempty"`
	Response       json.RawMessage `json:"response,omitempty"`
	Restarts       int             `json:"restarts"`
	CreatedAt      time.Time       `json:"createdAt"`
	UpdatedAt      time.Time       `json:"updatedAt"`
	AttemptLog     []Attempt       `json:"attemptLog,omitempty"`
}

// Attempt is one try of a message.
type Attempt struct {
	Attempt     int       `json:"attempt"`
	At          time.Time `json:"at"`
	RequestURL  string    `json:"requestUrl"`
	RequestBody string    `json:"requestBody"`
	HTTPStatus  int       `json:"httpStatus"`
	Response    string    `json:"response"`
	BodySign    string    `json:"bodySign"` // ok | bad | absent
	LatencyMS   int64     `json:"latencyMs"`
	ResultCode  string    `json:"resultCode,omitempty"`
	Verdict     string    `json:"verdict"` // success | in-progress | failure
	Error       string    `json:"error,omitempty"`
	NextTryAt   time.Time `json:"nextTryAt,omitzero"`
}

// Verdicts of an attempt.
const (
	VerdictSuccess    = "success"
	VerdictInProgress = "in-progress"
	VerdictFailure    = "failure"
)

// CallResult is the outcome of one HTTP call to a merchant.
type CallResult struct {
	MessageID  int64         `json:"messageId"`
	Attempt    int           `json:"attempt"`
	RequestURL string        `json:"requestUrl"`
	SentBody   []byte        `json:"-"` // the body of this attempt when it differs from the message's (a fresh businessId)
	HTTPStatus int           `json:"httpStatus"`
	Body       []byte        `json:"-"`
	BodySign   string        `json:"bodySign"`
	Latency    time.Duration `json:"latency"`
	ResultCode string        `json:"resultCode"`
	ResultMsg  string        `json:"resultMsg"`
	Verdict    string        `json:"verdict"`
	Error      string        `json:"error,omitempty"`
	Response   Response      `json:"response"`
}

// Response is the merchant's answer, decoded leniently.
type Response struct {
	ResultCode  string         `json:"resultCode"`
	ResultMsg   string         `json:"resultMsg,omitempty"`
	InstanceID  string         `json:"instanceId,omitempty"`
	EncryptType string         `json:"encryptType,omitempty"`
	Info        []InstanceInfo `json:"info,omitempty"`
}

// InstanceInfo is one entry of a queryInstance answer.
type InstanceInfo struct {
	InstanceID string      `json:"instanceId"`
	AppInfo    *AppInfo    `json:"appInfo,omitempty"`
	UsageInfo  []UsageInfo `json:"usageInfo,omitempty"`
}

// AppInfo is how the buyer uses an instance.
type AppInfo struct {
	FrontEndURL string `json:"frontEndUrl,omitempty"`
	AdminURL    string `json:"adminUrl,omitempty"`
	UserName    string `json:"userName,omitempty"`
	Password    string `json:"password,omitempty"`
	Memo        string `json:"memo,omitempty"`
}

// UsageInfo is pay-per-use usage reported by queryInstance.
type UsageInfo struct {
	RelatedInstanceID string      `json:"relatedInstanceId,omitempty"`
	UsageValue        json.Number `json:"usageValue,omitempty"`
	StatisticalTime   string      `json:"statisticalTime,omitempty"`
	DashboardURL      string      `json:"dashboardUrl,omitempty"`
}

// lenientString reads a JSON string or number as a string.
func lenientString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// ParseResponse decodes a merchant answer leniently: unknown fields are
// ignored and resultCode may be a string or a number.
func ParseResponse(body []byte) (Response, error) {
	var top map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&top); err != nil {
		return Response{}, fmt.Errorf("response is not a JSON object: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		// json.Valid's rule: one value, then only white space.
		return Response{}, fmt.Errorf("response is not valid JSON: bytes after the object at offset %d", d.InputOffset())
	}
	var r Response
	r.ResultCode = lenientString(top["resultCode"])
	r.ResultMsg = lenientString(top["resultMsg"])
	r.InstanceID = lenientString(top["instanceId"])
	r.EncryptType = lenientString(top["encryptType"])
	if raw, ok := top["info"]; ok && string(raw) != "null" {
		var infos []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &infos); err != nil {
			return r, fmt.Errorf("response field info: %w", err)
		}
		for i, in := range infos {
			ii := InstanceInfo{InstanceID: lenientString(in["instanceId"])}
			if a, ok := in["appInfo"]; ok && string(a) != "null" {
				var am map[string]json.RawMessage
				if err := json.Unmarshal(a, &am); err != nil {
					return r, fmt.Errorf("response field info[%d].appInfo: %w", i, err)
				}
				ii.AppInfo = &AppInfo{
					FrontEndURL: lenientString(am["frontEndUrl"]), AdminURL: lenientString(am["adminUrl"]),
					UserName: lenientString(am["userName"]), Password: lenientString(am["password"]), Memo: lenientString(am["memo"]),
				}
			}
			if u, ok := in["usageInfo"]; ok && string(u) != "null" {
				var us []map[string]json.RawMessage
				if err := json.Unmarshal(u, &us); err != nil {
					return r, fmt.Errorf("response field info[%d].usageInfo: %w", i, err)
				}
				for _, x := range us {
					ii.UsageInfo = append(ii.UsageInfo, UsageInfo{
						RelatedInstanceID: lenientString(x["relatedInstanceId"]), UsageValue: json.Number(lenientString(x["usageValue"])),
						StatisticalTime: lenientString(x["statisticalTime"]), DashboardURL: lenientString(x["dashboardUrl"]),
					})
				}
			}
			r.Info = append(r.Info, ii)
		}
	}
	if r.ResultCode == "" {
		return r, errors.New("response has no resultCode")
	}
	return r, nil
}

// maxResponse caps a merchant answer.
const maxResponse = 1 << 20

// sendSigned makes one signed call. It never returns an error: every failure is a
// failure verdict with a reason.
//
// Basic interfaces carry KooGallery's V2 URL signature; a message signed with
// the kit key (joint-operation kit syncs) carries the x-sign, x-timestamp and
// x-nonce headers instead (joint-kit.md §6.1), posted to the URL as given.
func (m *Market) sendSigned(ctx context.Context, activity, base, keyType, key string, body []byte) CallResult {
	res := CallResult{Verdict: VerdictFailure, BodySign: "absent"}
	nonce, err := m.randomHex(32)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	u := base
	ts := strconv.FormatInt(m.wire.Now().UnixMilli(), 10)
	if keyType != KeyKit {
		if u, err = kg.SignedURL(base, key, body, m.wire.Now(), nonce); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	res.RequestURL = u
	cctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		res.Error = err.Error()
		return res
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json;charset=utf8")
	if keyType == KeyKit {
		req.Header.Set("x-sign", kg.KitSign(key, nonce, ts, body))
		req.Header.Set("x-timestamp", ts)
		req.Header.Set("x-nonce", nonce)
	}
	start := time.Now() // latency is measured in real time, whatever the market clock
	resp, err := m.client.Do(req)
	if err != nil {
		res.Latency = time.Since(start)
		res.Error = "transport: " + err.Error()
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Timeout") {
			res.Error = fmt.Sprintf("timeout: no answer within %s", m.timeout)
		}
		return res
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	resp.Body.Close()
	res.Latency = time.Since(start)
	res.HTTPStatus = resp.StatusCode
	res.Body = data
	if err != nil {
		res.Error = "reading the answer: " + err.Error()
		return res
	}
	if len(data) > maxResponse {
		res.Error = "answer larger than 1 MiB"
		return res
	}
	if h := resp.Header.Get("Body-Sign"); h != "" {
		if err := kg.VerifyBodySignHeader(key, h, data); err != nil {
			res.BodySign = "bad"
			res.Error = "Body-Sign header does not match the answer: " + err.Error()
			if r, perr := ParseResponse(data); perr == nil && r.ResultCode != "" {
				msg, _ := kg.CodeMessage(r.ResultCode)
				if msg == "" {
					msg = "unknown result code"
				}
				res.Error += fmt.Sprintf("; the answer says resultCode %s (%s): %s", r.ResultCode, msg, r.ResultMsg)
			}
			return res
		}
		res.BodySign = "ok"
	}
	if resp.StatusCode != http.StatusOK {
		res.Error = fmt.Sprintf("HTTP status %d (KooGallery expects 200 with a resultCode)", resp.StatusCode)
		if r, perr := ParseResponse(data); perr == nil {
			res.ResultCode, res.ResultMsg = r.ResultCode, r.ResultMsg
		}
		return res
	}
	r, err := ParseResponse(data)
	res.Response = r
	res.ResultCode, res.ResultMsg = r.ResultCode, r.ResultMsg
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Verdict, res.Error = verdict(activity, r)
	return res
}

// MaxInstanceID is the documented maximum length of an instanceId (String 64).
const MaxInstanceID = 64

// verdict judges a well-formed answer.
func verdict(activity string, r Response) (string, string) {
	if activity == "newInstance" && strings.IndexByte(r.InstanceID, 0) >= 0 {
		// No id has one, and PostgreSQL text cannot store it.
		return VerdictFailure, fmt.Sprintf("resultCode %s with an instanceId holding a NUL character (\\u0000)", db.Text(r.ResultCode, 0))
	}
	switch {
	case r.ResultCode == kg.CodeSuccess:
		if activity == "newInstance" && r.InstanceID == "" {
			return VerdictFailure, "resultCode 000000 without instanceId"
		}
		if activity == "newInstance" && len(r.InstanceID) > MaxInstanceID {
			return VerdictFailure, fmt.Sprintf("resultCode 000000 with an instanceId of %d bytes (at most %d, saas-v2.md §4.1)", len(r.InstanceID), MaxInstanceID)
		}
		return VerdictSuccess, ""
	case r.ResultCode == kg.CodeInProgress && activity == "newInstance":
		if r.InstanceID == "" {
			return VerdictFailure, "resultCode 000004 without instanceId"
		}
		if len(r.InstanceID) > MaxInstanceID {
			return VerdictFailure, fmt.Sprintf("resultCode 000004 with an instanceId of %d bytes (at most %d, saas-v2.md §4.1)", len(r.InstanceID), MaxInstanceID)
		}
		return VerdictInProgress, ""
	default:
		msg, _ := kg.CodeMessage(r.ResultCode)
		if msg == "" {
			msg = "unknown result code"
		}
		return VerdictFailure, fmt.Sprintf("resultCode %s (%s): %s", r.ResultCode, msg, r.ResultMsg)
	}
}

type dispatchPayload struct {
	Message int64 `json:"m"`
	Attempt int   `json:"a"`
}

// enqueue records a message in the caller's transaction and schedules its
// first attempt (or queues it behind the subscription's open messages).
func (m *Market) enqueue(ctx context.Context, tx *db.Tx, now time.Time, o Outbound) (int64, error) {
	if o.KeyType == "" {
		o.KeyType = KeyBasic
	}
	if o.PolicyName == "" {
		o.PolicyName = o.Activity
	}
	state := "pending"
	if o.SubscriptionID != "" && !o.Force {
		var open int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM market_messages WHERE subscription_id = $1 AND state IN ('queued', 'pending')`,
			o.SubscriptionID).Scan(&open); err != nil {
			return 0, fmt.Errorf("market: enqueue: %w", err)
		}
		if open > 0 {
			state = "queued"
		}
	}
	eff, _ := json.Marshal(o.Effect)
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO market_messages (seller_id, subscription_id, order_id, activity, url, key_type, body, effect,
		policy, state, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$11) RETURNING id`,
		o.SellerID, o.SubscriptionID, o.OrderID, o.Activity, o.URL, o.KeyType, string(o.Body), string(eff), o.PolicyName, state, db.Millis(now)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("market: enqueue message: %w", err)
	}
	if state == "pending" {
		if err := m.scheduleAttempt(ctx, tx, now, id, 1, 0, now); err != nil {
			return 0, err
		}
	}
	return id, nil
}

func (m *Market) scheduleAttempt(ctx context.Context, tx *db.Tx, now time.Time, id int64, attempt, restarts int, due time.Time) error {
	p, _ := json.Marshal(dispatchPayload{Message: id, Attempt: attempt})
	_, _, err := jobs.Enqueue(ctx, tx, now, jobs.New{
		Kind:    JobDispatch,
		Key:     fmt.Sprintf("dispatch:%d:%d:%d", id, attempt, restarts),
		Payload: p,
		DueAt:   due,
	})
	if err != nil {
		return fmt.Errorf("market: schedule attempt: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE market_messages SET next_try_at = $1 WHERE id = $2`, db.Millis(due), id); err != nil {
		return fmt.Errorf("market: schedule attempt: %w", err)
	}
	return nil
}

// promoteNext starts the oldest queued message of a subscription when none
// is pending.
func (m *Market) promoteNext(ctx context.Context, tx *db.Tx, now time.Time, subID string) error {
	if subID == "" {
		return nil
	}
	var pending int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM market_messages WHERE subscription_id = $1 AND state = 'pending'`, subID).Scan(&pending); err != nil {
		return fmt.Errorf("market: promote: %w", err)
	}
	if pending > 0 {
		return nil
	}
	var id int64
	err := tx.QueryRow(ctx, `SELECT id FROM market_messages WHERE subscription_id = $1 AND state = 'queued' ORDER BY id LIMIT 1`, subID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("market: promote: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE market_messages SET state = 'pending', updated_at = $1 WHERE id = $2`, db.Millis(now), id); err != nil {
		return fmt.Errorf("market: promote: %w", err)
	}
	return m.scheduleAttempt(ctx, tx, now, id, 1, 0, now)
}

// handleDispatch runs one attempt of a message.
func (m *Market) handleDispatch(ctx context.Context, j *jobs.Job) error {
	var p dispatchPayload
	if err := json.Unmarshal(j.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("market: dispatch payload: %w", err))
	}
	msg, err := m.GetMessage(ctx, p.Message, false)
	if err != nil {
		if IsNotFound(err) {
			return jobs.Permanent(err)
		}
		return err
	}
	if msg.State != "pending" || msg.Attempts >= p.Attempt {
		return nil // already done by an earlier run of this job
	}
	wctx := context.WithoutCancel(ctx) // see below: a call in flight is finished and recorded
	sentAt := m.clock.Now()
	body := []byte(msg.Body)
	if p.Attempt > 1 && msg.Activity == "newInstance" {
		// saas-v2.md §4.1: businessId is different on every call, retries
		// and manual restarts included; the rest of the body is unchanged.
		id, err := m.newUUID()
		if err != nil {
			return err
		}
		body = withBusinessID(body, id)
	}
	var res CallResult
	key, kerr := m.accessKey(ctx, msg.SellerID, msg.KeyType)
	if kerr != nil {
		var me *Error
		if !errors.As(kerr, &me) {
			return kerr
		}
		res = CallResult{Verdict: VerdictFailure, BodySign: "absent", Error: kerr.Error(), RequestURL: msg.URL}
	} else {
		res = m.sendSigned(wctx, msg.Activity, msg.URL, msg.KeyType, key, body)
	}
	res.SentBody = body
	if msg.Effect.Kind == "poll" && res.Verdict == VerdictSuccess && !hasInstance(res.Response, msg.Effect.InstanceID) {
		res.Verdict, res.Error = VerdictFailure, "queryInstance does not return instance "+msg.Effect.InstanceID+" yet"
	}
	res.MessageID, res.Attempt = msg.ID, p.Attempt
	// A call under way when the market stops runs to its answer or its 5 s
	// timeout and is recorded (serve waits for the runner before closing the
	// database): cutting it off would lose an answer the merchant gave and
	// have the call made again at the next start.
	err = m.db.Tx(wctx, func(tx *db.Tx) error { return m.record(wctx, tx, msg.ID, p.Attempt, sentAt, res) })
	if err != nil {
		return fmt.Errorf("market: record attempt %d of message %d: %w", p.Attempt, msg.ID, err)
	}
	m.log.InfoContext(ctx, "market: production-interface call", "message", msg.ID, "activity", msg.Activity, "attempt", p.Attempt,
		"verdict", res.Verdict, "resultCode", res.ResultCode, "latency", res.Latency, "error", res.Error)
	return nil
}

// record stores an attempt and decides what follows: the effect of success,
// the next try, or the documented outcome of the final failure.
func (m *Market) record(ctx context.Context, tx *db.Tx, id int64, attempt int, sentAt time.Time, res CallResult) error {
	now := m.clock.Now()
	r, err := tx.Exec(ctx, `UPDATE market_messages SET updated_at = $1 WHERE id = $2 AND state = 'pending' AND attempts = $3`, db.Millis(now), id, attempt-1)
	if err != nil {
		return err
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return nil // another worker recorded this attempt
	}
	msg, err := m.getMessage(ctx, tx, id)
	if err != nil {
		return err
	}
	first := msg.FirstTryAt
	if first.IsZero() {
		first = sentAt
	}
	sent := res.SentBody
	if sent == nil {
		sent = msg.Body
	}
	state := "succeeded"
	var next time.Time
	switch res.Verdict {
	case VerdictSuccess, VerdictInProgress:
	default:
		state = "failed"
		if msg.Restarts == 0 {
			if t, ok := m.policy(msg.PolicyName).next(first, attempt); ok {
				state, next = "pending", t
			}
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO market_attempts (message_id, attempt, at, request_url, request_body, http_status, response_body,
		body_sign, latency_ms, result_code, verdict, error, next_try_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)
		ON CONFLICT (message_id, attempt) DO NOTHING`,
		id, attempt, db.Millis(sentAt), res.RequestURL, string(sent), res.HTTPStatus, db.Text(string(res.Body), 0), db.Text(res.BodySign, 0),
		res.Latency.Milliseconds(), db.Text(res.ResultCode, 0), res.Verdict, db.Text(res.Error, 0), db.Millis(next)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE market_messages SET state = $1, attempts = $2, first_try_at = $3, next_try_at = $4, last_code = $5,
		last_error = $6, response = $7, updated_at = $8 WHERE id = $9`,
		state, attempt, db.Millis(first), db.Millis(next), db.Text(res.ResultCode, 0), db.Text(res.Error, 0), db.Text(string(res.Body), 0), db.Millis(now), id); err != nil {
		return err
	}
	msg.State, msg.Attempts, msg.FirstTryAt = state, attempt, first
	switch state {
	case "pending":
		return m.scheduleAttempt(ctx, tx, now, id, attempt+1, msg.Restarts, next)
	case "succeeded":
		if err := m.applySuccess(ctx, tx, now, msg, res); err != nil {
			return err
		}
	case "failed":
		if err := m.applyFailure(ctx, tx, now, msg, res); err != nil {
			return err
		}
	}
	return m.promoteNext(ctx, tx, now, msg.SubscriptionID)
}

// Call makes one synchronous, logged call (no retry, no sequencing): the
// buyer's resource view, changeInstanceCheck, address verification, or any
// activity and body a seller tool wants to send.
func (m *Market) Call(ctx context.Context, o Outbound) (CallResult, error) {
	if o.KeyType == "" {
		o.KeyType = KeyBasic
	}
	if o.PolicyName == "" {
		o.PolicyName = o.Activity
	}
	key, err := m.accessKey(ctx, o.SellerID, o.KeyType)
	if err != nil {
		return CallResult{}, err
	}
	now := m.clock.Now()
	eff, _ := json.Marshal(o.Effect)
	var id int64
	if err := m.db.QueryRow(ctx, `INSERT INTO market_messages (seller_id, subscription_id, order_id, activity, url, key_type, body, effect,
		policy, state, created_at, updated_at, call_deadline) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'sending',$10,$10,$11) RETURNING id`,
		o.SellerID, o.SubscriptionID, o.OrderID, o.Activity, o.URL, o.KeyType, string(o.Body), string(eff), o.PolicyName, db.Millis(now),
		db.Millis(m.wire.Now().Add(m.timeout))).Scan(&id); err != nil {
		return CallResult{}, fmt.Errorf("market: call: %w", err)
	}
	res := m.sendSigned(ctx, o.Activity, o.URL, o.KeyType, key, o.Body)
	res.MessageID, res.Attempt = id, 1
	if o.Effect.Kind == "verify" && res.HTTPStatus == http.StatusOK && res.ResultCode != "" && res.BodySign != "bad" {
		// An address verification only asks whether the address speaks the protocol.
		res.Verdict, res.Error = VerdictSuccess, ""
	}
	state := "succeeded"
	if res.Verdict == VerdictFailure {
		state = "failed"
	}
	err = m.db.Tx(ctx, func(tx *db.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO market_attempts (message_id, attempt, at, request_url, request_body, http_status, response_body,
			body_sign, latency_ms, result_code, verdict, error, next_try_at) VALUES ($1,1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,0)
			ON CONFLICT (message_id, attempt) DO NOTHING`,
			id, db.Millis(now), res.RequestURL, string(o.Body), res.HTTPStatus, db.Text(string(res.Body), 0), db.Text(res.BodySign, 0), res.Latency.Milliseconds(),
			db.Text(res.ResultCode, 0), res.Verdict, db.Text(res.Error, 0)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE market_messages SET state = $1, attempts = 1, first_try_at = $2, last_code = $3, last_error = $4,
			response = $5, updated_at = $6 WHERE id = $7`, state, db.Millis(now), db.Text(res.ResultCode, 0), db.Text(res.Error, 0), db.Text(string(res.Body), 0), db.Millis(m.clock.Now()), id)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("market: record call: %w", err)
	}
	return res, nil
}

// Send queues an asynchronous message with the retry policy of its activity
// (or o.PolicyName), in its own transaction, and wakes the runner.
func (m *Market) Send(ctx context.Context, o Outbound) (int64, error) {
	if o.Activity == "" {
		return 0, badField("activity", "is required")
	}
	if !json.Valid(o.Body) {
		return 0, badField("body", "is not valid JSON")
	}
	if err := checkAddressURL("url", o.URL); err != nil {
		return 0, err
	}
	var id int64
	err := m.db.Tx(ctx, func(tx *db.Tx) error {
		var err error
		id, err = m.enqueue(ctx, tx, m.clock.Now(), o)
		return err
	})
	if err != nil {
		return 0, err
	}
	m.Wake()
	return id, nil
}

// Restart makes a failed message try again once, now (Seller Center's
// 重新启动). The success of the restarted call has the documented effect.
func (m *Market) Restart(ctx context.Context, id int64) (Message, error) {
	err := m.db.Tx(ctx, func(tx *db.Tx) error {
		now := m.clock.Now()
		msg, err := m.getMessage(ctx, tx, id)
		if err != nil {
			return err
		}
		if msg.State != "failed" {
			return conflict("message %d is %s; only a failed message can be restarted", id, msg.State)
		}
		switch msg.Effect.Kind {
		case "provision", "poll", "upgrade":
			var status string
			if err := tx.QueryRow(ctx, `SELECT status FROM market_orders WHERE order_id = $1`, msg.Effect.OrderID).Scan(&status); err == nil && status == OrderRefunded {
				if msg.Effect.Kind == "upgrade" {
					// A success now would apply a spec the buyer was refunded for.
					return refused("upgrade order %s was refunded when its retry window ended; the spec stays, the buyer must order the upgrade again", msg.Effect.OrderID)
				}
				return refused("order %s was unsubscribed and refunded when the create window ended; the buyer must order again", msg.Effect.OrderID)
			}
		}
		r, err := tx.Exec(ctx, `UPDATE market_messages SET state = 'pending', restarts = restarts + 1, updated_at = $1 WHERE id = $2 AND state = 'failed'`, db.Millis(now), id)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return conflict("message %d changed meanwhile", id)
		}
		return m.scheduleAttempt(ctx, tx, now, id, msg.Attempts+1, msg.Restarts+1, now)
	})
	if err != nil {
		var me *Error
		if errors.As(err, &me) {
			return Message{}, err
		}
		return Message{}, fmt.Errorf("market: restart message %d: %w", id, err)
	}
	m.Wake()
	return m.GetMessage(ctx, id, true)
}

const messageCols = `id, seller_id, subscription_id, order_id, activity, url, key_type, body, effect, policy, state, attempts,
	first_try_at, next_try_at, last_code, last_error, response, restarts, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func (m *Market) scanMessage(s scanner) (Message, error) {
	var msg Message
	var body, eff, resp string
	var first, next, created, updated int64
	if err := s.Scan(&msg.ID, &msg.SellerID, &msg.SubscriptionID, &msg.OrderID, &msg.Activity, &msg.URL, &msg.KeyType, &body, &eff,
		&msg.PolicyName, &msg.State, &msg.Attempts, &first, &next, &msg.LastCode, &msg.LastError, &resp, &msg.Restarts, &created, &updated); err != nil {
		return Message{}, err
	}
	msg.Body = json.RawMessage(body)
	_ = json.Unmarshal([]byte(eff), &msg.Effect)
	if resp != "" && json.Valid([]byte(resp)) {
		msg.Response = json.RawMessage(resp)
	}
	msg.Policy = m.policy(msg.PolicyName)
	msg.FirstTryAt, msg.NextTryAt, msg.CreatedAt, msg.UpdatedAt = db.FromMillis(first), db.FromMillis(next), db.FromMillis(created), db.FromMillis(updated)
	return msg, nil
}

func (m *Market) getMessage(ctx context.Context, tx *db.Tx, id int64) (Message, error) {
	msg, err := m.scanMessage(tx.QueryRow(ctx, `SELECT `+messageCols+` FROM market_messages WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, notFound("message", strconv.FormatInt(id, 10))
	}
	return msg, err
}

// GetMessage returns a message, with its attempts when withAttempts.
func (m *Market) GetMessage(ctx context.Context, id int64, withAttempts bool) (Message, error) {
	msg, err := m.scanMessage(m.db.QueryRow(ctx, `SELECT `+messageCols+` FROM market_messages WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, notFound("message", strconv.FormatInt(id, 10))
	}
	if err != nil {
		return Message{}, fmt.Errorf("market: get message: %w", err)
	}
	if withAttempts {
		rows, err := m.db.Query(ctx, `SELECT attempt, at, request_url, request_body, http_status, response_body, body_sign, latency_ms,
			result_code, verdict, error, next_try_at FROM market_attempts WHERE message_id = $1 ORDER BY attempt`, id)
		if err != nil {
			return Message{}, fmt.Errorf("market: get attempts: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var a Attempt
			var at, next int64
			if err := rows.Scan(&a.Attempt, &at, &a.RequestURL, &a.RequestBody, &a.HTTPStatus, &a.Response, &a.BodySign, &a.LatencyMS,
				&a.ResultCode, &a.Verdict, &a.Error, &next); err != nil {
				return Message{}, fmt.Errorf("market: get attempts: %w", err)
			}
			a.At, a.NextTryAt = db.FromMillis(at), db.FromMillis(next)
			msg.AttemptLog = append(msg.AttemptLog, a)
		}
		if err := rows.Err(); err != nil {
			return Message{}, fmt.Errorf("market: get attempts: %w", err)
		}
	}
	return msg, nil
}

// MessageFilter selects messages; empty fields match everything.
type MessageFilter struct {
	SellerID       string
	SubscriptionID string
	OrderID        string
	Activity       string
	State          string
	Limit          int // default 100, at most 1000
}

// ListMessages returns messages, newest first.
func (m *Market) ListMessages(ctx context.Context, f MessageFilter) ([]Message, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	rows, err := m.db.Query(ctx, `SELECT `+messageCols+` FROM market_messages
		WHERE ($1 = '' OR seller_id = $1) AND ($2 = '' OR subscription_id = $2) AND ($3 = '' OR order_id = $3)
		AND ($4 = '' OR activity = $4) AND ($5 = '' OR state = $5) ORDER BY id DESC LIMIT $6`,
		f.SellerID, f.SubscriptionID, f.OrderID, f.Activity, f.State, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("market: list messages: %w", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		msg, err := m.scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("market: list messages: %w", err)
		}
		out = append(out, msg)
	}
	return out, rows.Err()
}

// withBusinessID returns body with the value of its top-level string field
// businessId replaced by id, every other byte unchanged. A body without one
// (a seller tool's own body) is returned as is.
func withBusinessID(body []byte, id string) []byte {
	var v struct {
		BusinessID *string `json:"businessId"`
	}
	if json.Unmarshal(body, &v) != nil || v.BusinessID == nil {
		return body
	}
	old, _ := json.Marshal(*v.BusinessID)
	for _, sep := range []string{":", ": "} {
		pat := []byte(`"businessId"` + sep + string(old))
		if i := bytes.Index(body, pat); i >= 0 {
			nv, _ := json.Marshal(id)
			out := make([]byte, 0, len(body)+len(nv))
			out = append(out, body[:i]...)
			out = append(out, `"businessId"`+sep...)
			out = append(out, nv...)
			return append(out, body[i+len(pat):]...)
		}
	}
	return body
}

func hasInstance(r Response, id string) bool {
	for _, in := range r.Info {
		if in.InstanceID == id {
			return true
		}
	}
	return false
}
