package merchant

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/kg"
)

// UsagePushPath is the path of the usage push open API.
const UsagePushPath = "/api/mkp-openapi-public/global/v1/isv/usage-data"

// MaxUsageRecordsPerPush is the documented cap per call.
const MaxUsageRecordsPerPush = 1000

// Usage values are kept as integers in ten-thousandths (4 decimals, exact),
// checked by kg.ParseUsageValue against Double(12,4): the same check souk's
// kg decoders (usageInfo) and kg.CheckRecord (usage push) apply, so the
// merchant never accepts a value the marketplace refuses.

const usageTimeLayout = "20060102T150405Z"

// parseUsageTime accepts RFC 3339 or the wire format yyyyMMdd'T'HHmmss'Z'.
func parseUsageTime(s string) (time.Time, error) {
	if t, err := time.Parse(usageTimeLayout, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("must be RFC 3339 or yyyyMMddTHHmmssZ")
	}
	return t.UTC(), nil
}

// UsageRecordInput is one usage record given to the management API.
type UsageRecordInput struct {
	MeteringSN        string      `json:"meteringSn"`
	UsageValue        json.Number `json:"usageValue"`
	BeginTime         string      `json:"beginTime"`
	EndTime           string      `json:"endTime"`
	RecordTime        string      `json:"recordTime,omitempty"`
	RelatePkgInstance string      `json:"relatePkgInstance,omitempty"`
}

type usageRecord struct {
	sn, relate         string
	value              int64
	begin, end, record time.Time
}

func (in *UsageRecordInput) validate(prefix string, now time.Time) (usageRecord, error) {
	r := usageRecord{sn: strings.TrimSpace(in.MeteringSN), relate: in.RelatePkgInstance}
	if r.sn == "" || len(r.sn) > 64 {
		return r, &kg.FieldError{Field: prefix + "meteringSn", Reason: "is required, at most 64 characters"}
	}
	v, err := kg.ParseUsageValue(string(in.UsageValue), true)
	if err != nil {
		return r, &kg.FieldError{Field: prefix + "usageValue", Reason: err.Error()}
	}
	r.value = v
	if r.begin, err = parseUsageTime(in.BeginTime); err != nil {
		return r, &kg.FieldError{Field: prefix + "beginTime", Reason: err.Error()}
	}
	if r.end, err = parseUsageTime(in.EndTime); err != nil {
		return r, &kg.FieldError{Field: prefix + "endTime", Reason: err.Error()}
	}
	if !r.end.After(r.begin) {
		return r, &kg.FieldError{Field: prefix + "endTime", Reason: "must be after beginTime"}
	}
	r.record = now.UTC().Truncate(time.Second)
	if in.RecordTime != "" {
		if r.record, err = parseUsageTime(in.RecordTime); err != nil {
			return r, &kg.FieldError{Field: prefix + "recordTime", Reason: err.Error()}
		}
	}
	if len(r.relate) > 64 {
		return r, &kg.FieldError{Field: prefix + "relatePkgInstance", Reason: "is longer than 64 characters"}
	}
	return r, nil
}

// ErrNotPayPerUse refuses usage on an instance that is not pay-per-use.
var ErrNotPayPerUse = errors.New("instance is not pay-per-use")

// RecordUsage stores usage records (idempotent on meteringSn), refreshes the
// instance's cumulative usageInfo and schedules the push. It returns how many
// records were new.
func (m *Merchant) RecordUsage(ctx context.Context, instanceID string, recs []UsageRecordInput, dashboardURL string) (int, error) {
	if len(recs) == 0 {
		return 0, &kg.FieldError{Field: "records", Reason: "is empty"}
	}
	if len(recs) > MaxUsageRecordsPerPush {
		return 0, &kg.FieldError{Field: "records", Reason: fmt.Sprintf("at most %d per call", MaxUsageRecordsPerPush)}
	}
	if len(dashboardURL) > 512 { // as validateUsageInfo counts it
		return 0, &kg.FieldError{Field: "dashboardUrl", Reason: "is longer than 512 characters"}
	}
	now := m.clock.Now()
	parsed := make([]usageRecord, len(recs))
	for i := range recs {
		r, err := recs[i].validate(fmt.Sprintf("records[%d].", i), now)
		if err != nil {
			return 0, err
		}
		parsed[i] = r
	}
	inserted := 0
	err := m.db.Tx(ctx, func(tx *db.Tx) error {
		inserted = 0
		now := m.clock.Now()
		inst, err := activeInstance(ctx, tx, instanceID)
		if err != nil {
			return err
		}
		if inst.ChargingMode != ChargingOnDemand && inst.ChargingMode != ChargingOnDemandPkg {
			return fmt.Errorf("instance %s (%s): %w", inst.ID, inst.ChargingMode, ErrNotPayPerUse)
		}
		var first string
		for _, r := range parsed {
			res, err := tx.Exec(ctx, `INSERT INTO merchant_usage (metering_sn, instance_id, usage_value, begin_at, end_at, record_at, relate_pkg_instance, test_flag, pushed_at, push_result, created_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (metering_sn) DO NOTHING`,
				r.sn, inst.ID, kg.FormatUsageValue(r.value), r.begin.UnixMilli(), r.end.UnixMilli(), r.record.UnixMilli(), r.relate, b2i(inst.TestFlag),
				sandboxPushed(inst.TestFlag, now), sandboxResult(inst.TestFlag), now.UnixMilli())
			if err != nil {
				return fmt.Errorf("record usage: %w", err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				inserted++
				if first == "" {
					first = r.sn
				}
			}
		}
		if err := m.refreshUsageInfoTx(ctx, tx, now, inst.ID, dashboardURL); err != nil {
			return err
		}
		if first != "" && !inst.TestFlag {
			if _, _, err := jobs.Enqueue(ctx, tx, now, jobs.New{Kind: JobUsagePush, Key: "usage:" + first}); err != nil {
				return fmt.Errorf("record usage: schedule push: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	m.wake()
	return inserted, nil
}

// Sandbox usage is never pushed to the marketplace.
func sandboxPushed(test bool, now time.Time) int64 {
	if test {
		return now.UnixMilli()
	}
	return 0
}

func sandboxResult(test bool) string {
	if test {
		return "sandbox: not pushed"
	}
	return ""
}

// refreshUsageInfoTx recomputes the cumulative usageInfo of an instance from
// its records: one entry per related package instance. When the result is
// not something KooGallery can take (a total of 1e8 or more, beyond
// Double(12,4); more than MaxUsageInfoEntries packages; a stored value from
// before souk checked Double(12,4)), the records still stand and are pushed,
// queryInstance keeps the last valid usageInfo, and a warning says why.
func (m *Merchant) refreshUsageInfoTx(ctx context.Context, tx *db.Tx, now time.Time, instanceID, dashboardURL string) error {
	rows, err := tx.Query(ctx, `SELECT usage_value, relate_pkg_instance FROM merchant_usage WHERE instance_id = $1`, instanceID)
	if err != nil {
		return fmt.Errorf("usage totals: %w", err)
	}
	defer rows.Close()
	totals := map[string]int64{}
	var bad error
	for rows.Next() {
		var v, rel string
		if err := rows.Scan(&v, &rel); err != nil {
			return fmt.Errorf("usage totals: %w", err)
		}
		n, err := kg.ParseUsageValue(v, false)
		if err != nil && bad == nil {
			bad = fmt.Errorf("stored usage value %.40q: %w", v, err)
		}
		totals[rel] += n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("usage totals: %w", err)
	}
	rows.Close()
	if dashboardURL == "" {
		inst, err := loadInstance(ctx, tx, instanceID)
		if err != nil {
			return err
		}
		if len(inst.UsageInfo) > 0 {
			dashboardURL = inst.UsageInfo[0].DashboardURL
		}
	}
	rels := make([]string, 0, len(totals))
	for r := range totals {
		rels = append(rels, r)
	}
	sort.Strings(rels)
	infos := make([]UsageInfo, 0, len(rels))
	for _, r := range rels {
		infos = append(infos, UsageInfo{RelatedInstanceID: r, UsageValue: json.Number(kg.FormatUsageValue(totals[r])), StatisticalTime: statisticalTime(now), DashboardURL: dashboardURL})
	}
	if bad == nil {
		bad = checkUsageInfos(infos)
	}
	if bad != nil {
		m.log.Warn("cumulative usageInfo not updated: KooGallery could not take it; the usage records are kept and pushed",
			"instanceId", instanceID, "err", bad)
		return nil
	}
	return storeUsageInfoTx(ctx, tx, now, instanceID, infos)
}

// UsageClient pushes usage records to the marketplace.
type UsageClient struct {
	BaseURL   string
	AccessKey string
	Client    *http.Client
	Clock     clock.Clock
	Rand      io.Reader
}

// wireUsage is one usage_records entry (Push sends it as a kg.UsageRecord,
// in the naturally sorted body kg.EncodeUsagePush writes).
type wireUsage struct {
	BeginTime         string `json:"begin_time"`
	EndTime           string `json:"end_time"`
	InstanceID        string `json:"instance_id"`
	MeteringSN        string `json:"metering_sn"`
	RecordTime        string `json:"record_time"`
	RelatePkgInstance string `json:"relate_pkg_instance,omitempty"`
	UsageValue        string `json:"usage_value"`
}

// UsagePushError is a push the marketplace refused.
type UsagePushError struct {
	Status int
	Body   string
}

func (e *UsagePushError) Error() string {
	return fmt.Sprintf("usage push: HTTP %d: %.300s", e.Status, e.Body)
}

// Push sends up to MaxUsageRecordsPerPush records in one signed call and
// returns the marketplace's answer.
func (c *UsageClient) Push(ctx context.Context, recs []wireUsage) (*UsagePushResult, error) {
	if c.BaseURL == "" {
		return nil, errors.New("usage push: SOUK_MARKET_URL is not set")
	}
	if len(recs) == 0 || len(recs) > MaxUsageRecordsPerPush {
		return nil, fmt.Errorf("usage push: %d records (1..%d)", len(recs), MaxUsageRecordsPerPush)
	}
	// The body is signed "after natural sorting" (saas-v2.md §5.2): send
	// exactly the naturally sorted body, kg.EncodeUsagePush (keys sorted,
	// minimal escaping), so that the raw bytes and a re-serialization with
	// sorted keys are the same bytes. json.Marshal's HTML escaping (\u0026
	// for '&') made them differ.
	wire := make([]kg.UsageRecord, len(recs))
	for i, r := range recs {
		wire[i] = kg.UsageRecord{BeginTime: r.BeginTime, EndTime: r.EndTime, InstanceID: r.InstanceID, MeteringSN: r.MeteringSN,
			RecordTime: r.RecordTime, RelatePkgInstance: r.RelatePkgInstance, UsageValue: r.UsageValue}
	}
	body, err := kg.EncodeUsagePush(&kg.UsagePushRequest{UsageRecords: wire})
	if err != nil {
		return nil, fmt.Errorf("usage push: %w", err)
	}
	ts := strconv.FormatInt(c.Clock.Now().UnixMilli(), 10)
	nonce := newUUID(c.Rand)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+UsagePushPath, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("usage push: %w", err)
	}
	req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	req.Header.Set("ts", ts)
	req.Header.Set("nonce", nonce)
	req.Header.Set("signature", kg.UsageSignature(c.AccessKey, ts, nonce, body))
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("usage push: %w", err)
	}
	defer resp.Body.Close()
	ans, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	failed, err := parseUsageAnswer(resp.StatusCode, ans, recs)
	return &UsagePushResult{Answer: ans, Failed: failed}, err
}

// UsagePushResult is the outcome of one push.
type UsagePushResult struct {
	Answer []byte
	// Failed are the records the marketplace refused one by one (the others
	// of the call were accepted), by metering_sn.
	Failed map[string]UsageRecordFailure
}

// UsageRecordFailure is one refused record, with KooGallery's per-record code.
type UsageRecordFailure struct {
	Code string
	Msg  string
}

// Settled reports whether the record is done with: accepted as a
// duplicate, or refused for good. Other codes (unknown instance, instance
// status) may clear up and are retried.
func (f UsageRecordFailure) Settled() (accepted, final bool) {
	switch f.Code {
	case kg.UsageErrDuplicateRecord:
		return true, true
	case kg.UsageErrTimeFormat, kg.UsageErrUsageAbnormal, kg.UsageErrMissingSN, kg.UsageErrDuplicateSN, kg.UsageErrProductDelisted,
		kg.UsageErrRecordExpired, kg.UsageErrNotSellers, kg.UsageErrTimeRange, kg.UsageErrNotOnDemand:
		return false, true
	}
	return false, false
}

// parseUsageAnswer reads a usage push answer: success (resultCode or
// error_code MKT.0000, or none, with HTTP 200) → no failures; an answer
// listing refused records (extra_info.failed) → those; anything else is an
// error for the whole call (retried).
func parseUsageAnswer(status int, body []byte, recs []wireUsage) (map[string]UsageRecordFailure, error) {
	var a struct {
		ResultCode lstring `json:"resultCode"`
		ErrorCode  lstring `json:"error_code"`
		ResultMsg  lstring `json:"resultMsg"`
		ExtraInfo  struct {
			Failed []struct {
				Index      *int    `json:"index"`
				MeteringSN lstring `json:"metering_sn"`
				ErrorCode  lstring `json:"error_code"`
				ErrorMsg   lstring `json:"error_msg"`
			} `json:"failed"`
		} `json:"extra_info"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		if status == http.StatusOK && len(bytes.TrimSpace(body)) == 0 {
			return nil, nil
		}
		return nil, &UsagePushError{Status: status, Body: string(body)}
	}
	code := string(a.ResultCode)
	if code == "" {
		code = string(a.ErrorCode)
	}
	if len(a.ExtraInfo.Failed) > 0 {
		out := map[string]UsageRecordFailure{}
		for _, f := range a.ExtraInfo.Failed {
			sn := string(f.MeteringSN)
			if sn == "" && f.Index != nil && *f.Index >= 0 && *f.Index < len(recs) {
				sn = recs[*f.Index].MeteringSN
			}
			if sn == "" {
				return nil, &UsagePushError{Status: status, Body: string(body)}
			}
			out[sn] = UsageRecordFailure{Code: string(f.ErrorCode), Msg: string(f.ErrorMsg)}
		}
		return out, nil
	}
	if status == http.StatusOK {
		switch code {
		case "", kg.MKTSuccess, "000000", "0":
			return nil, nil
		}
	}
	return nil, &UsagePushError{Status: status, Body: string(body)}
}

// usagePushLease is how long a push keeps the records it sends to itself
// (Merchant clock): the call (at most the outbound client's timeout) and the
// recording of its answer, with room for replicas' clocks that differ.
const usagePushLease = 2 * time.Minute

// claimUsageSQL claims up to $3 pending usage records that no push holds
// ($2 = now) until $1, oldest first. On PostgreSQL, SKIP LOCKED passes over
// the rows another replica is claiming, and the outer WHERE checks the
// claim again on the row as that replica left it.
func claimUsageSQL(d db.Dialect) string {
	lock := ""
	if d == db.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	return `UPDATE merchant_usage SET push_lease_until = $1
	WHERE pushed_at = 0 AND push_lease_until <= $2 AND metering_sn IN (
		SELECT metering_sn FROM merchant_usage WHERE pushed_at = 0 AND push_lease_until <= $2
		ORDER BY created_at, metering_sn LIMIT $3` + lock + `)
	RETURNING metering_sn, instance_id, usage_value, begin_at, end_at, record_at, relate_pkg_instance, created_at`
}

// claimUsage claims the next pending records for one push (claimUsageSQL).
func (m *Merchant) claimUsage(ctx context.Context) ([]wireUsage, error) {
	type claimed struct {
		wireUsage
		created int64
	}
	var out []claimed
	err := m.db.Tx(ctx, func(tx *db.Tx) error {
		out = out[:0]
		now := m.clock.Now()
		rows, err := tx.Query(ctx, claimUsageSQL(tx.Dialect), now.Add(usagePushLease).UnixMilli(), now.UnixMilli(), MaxUsageRecordsPerPush)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				c                  claimed
				begin, end, record int64
			)
			if err := rows.Scan(&c.MeteringSN, &c.InstanceID, &c.UsageValue, &begin, &end, &record, &c.RelatePkgInstance, &c.created); err != nil {
				return err
			}
			c.BeginTime = time.UnixMilli(begin).UTC().Format(usageTimeLayout)
			c.EndTime = time.UnixMilli(end).UTC().Format(usageTimeLayout)
			c.RecordTime = time.UnixMilli(record).UTC().Format(usageTimeLayout)
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("usage push: claim records: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].created != out[j].created {
			return out[i].created < out[j].created
		}
		return out[i].MeteringSN < out[j].MeteringSN
	})
	recs := make([]wireUsage, len(out))
	for i := range out {
		recs[i] = out[i].wireUsage
	}
	return recs, nil
}

// releaseUsage gives claimed records back for a later push (the call
// failed, or the marketplace refused them for now).
func (m *Merchant) releaseUsage(ctx context.Context, sns []string) {
	if len(sns) == 0 {
		return
	}
	ph, args := inList(sns, 1)
	if _, err := m.db.Exec(context.WithoutCancel(ctx), `UPDATE merchant_usage SET push_lease_until = 0 WHERE pushed_at = 0 AND metering_sn IN (`+ph+`)`, args...); err != nil {
		// The claims run out after usagePushLease.
		m.log.Warn("usage push: release records", "records", len(sns), "err", err)
	}
}

// handleUsagePush pushes every pending usage record, ≤1000 per call. Each
// call's records are claimed first (claimUsage), so that the push jobs of two
// replicas, or two workers, never send one record twice; records another
// push holds make this job run again when that claim runs out, in case that
// push never finishes.
func (m *Merchant) handleUsagePush(ctx context.Context, _ *jobs.Job) error {
	for {
		recs, err := m.claimUsage(ctx)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return m.usageHeldElsewhere(ctx)
		}
		full := len(recs) == MaxUsageRecordsPerPush
		if recs, err = m.settleInvalidUsage(ctx, recs); err != nil {
			return err
		}
		if len(recs) == 0 {
			if full {
				continue
			}
			return nil
		}
		res, err := m.usage.Push(ctx, recs)
		if err != nil {
			m.metrics.usagePush("error", len(recs))
			sns := make([]string, len(recs))
			for i, r := range recs {
				sns[i] = r.MeteringSN
			}
			m.releaseUsage(ctx, sns)
			return err
		}
		var retry []string
		err = m.db.Tx(ctx, func(tx *db.Tx) error {
			retry = retry[:0]
			now := m.clock.Now()
			for _, r := range recs {
				result, outcome := db.Text(string(res.Answer), 500), "ok"
				if f, ok := res.Failed[r.MeteringSN]; ok {
					accepted, final := f.Settled()
					switch {
					case accepted:
						result, outcome = "duplicate "+f.Code, "ok"
					case final:
						result, outcome = db.Text("rejected "+f.Code+": "+f.Msg, 500), "rejected"
						m.log.Error("usage record refused by the marketplace", "meteringSn", r.MeteringSN, "instanceId", r.InstanceID, "code", f.Code, "msg", f.Msg)
					default:
						retry = append(retry, r.MeteringSN)
						m.metrics.usagePush("retry", 1)
						continue
					}
				}
				m.metrics.usagePush(outcome, 1)
				if _, err := tx.Exec(ctx, `UPDATE merchant_usage SET pushed_at = $2, push_result = $3, push_lease_until = 0 WHERE metering_sn = $1`,
					r.MeteringSN, now.UnixMilli(), result); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("usage push: mark pushed: %w", err)
		}
		if len(retry) > 0 {
			m.releaseUsage(ctx, retry)
			return fmt.Errorf("usage push: %d record(s) refused for now; retrying", len(retry))
		}
		if !full {
			return nil
		}
	}
}

// usageHeldElsewhere is the end of a push job that found nothing to claim:
// done, unless pending records are held by another push (another replica's
// job, running or stopped), whose claim this job outlives: it runs again
// when the claim runs out, and pushes the records if that push did not.
func (m *Merchant) usageHeldElsewhere(ctx context.Context) error {
	var until sql.NullInt64
	if err := m.db.QueryRow(ctx, `SELECT MIN(push_lease_until) FROM merchant_usage WHERE pushed_at = 0`).Scan(&until); err != nil {
		return fmt.Errorf("usage push: pending records: %w", err)
	}
	if !until.Valid {
		return nil
	}
	return jobs.RetryAt(time.UnixMilli(until.Int64).Add(time.Second), nil)
}

// settleInvalidUsage checks every record with kg.CheckRecord, the check the
// marketplace's side applies, before it is sent: a record it refuses (only a
// value stored before souk checked Double(12,4) can be) would be refused for
// good, so it is marked rejected here, with an error log, and left out.
func (m *Merchant) settleInvalidUsage(ctx context.Context, recs []wireUsage) ([]wireUsage, error) {
	ok := recs[:0:0]
	for i, r := range recs {
		e := kg.CheckRecord(i, kg.UsageRecord{BeginTime: r.BeginTime, EndTime: r.EndTime, InstanceID: r.InstanceID, MeteringSN: r.MeteringSN,
			RecordTime: r.RecordTime, RelatePkgInstance: r.RelatePkgInstance, UsageValue: r.UsageValue})
		if e == nil {
			ok = append(ok, r)
			continue
		}
		m.log.Error("usage record not pushed: the marketplace would refuse it", "meteringSn", r.MeteringSN, "instanceId", r.InstanceID, "code", e.Code, "err", e.Msg)
		if _, err := m.db.Exec(ctx, `UPDATE merchant_usage SET pushed_at = $2, push_result = $3, push_lease_until = 0 WHERE metering_sn = $1`,
			r.MeteringSN, m.clock.Now().UnixMilli(), db.Text("rejected by souk before sending "+e.Code+": "+e.Field+" "+e.Msg, 500)); err != nil {
			return nil, fmt.Errorf("usage push: settle invalid record: %w", err)
		}
		m.metrics.usagePush("rejected", 1)
	}
	return ok, nil
}

// UsageState is where a recorded usage record stands with the marketplace.
const (
	UsageStatePending  = "pending"  // not yet accepted or finally refused (waiting, or retried)
	UsageStatePushed   = "pushed"   // accepted by the marketplace (or a sandbox record, never sent)
	UsageStateRejected = "rejected" // finally refused, by the marketplace or by souk before sending
)

// UsageRecordStatus is a recorded usage record and its push outcome.
type UsageRecordStatus struct {
	MeteringSN        string    `json:"meteringSn"`
	InstanceID        string    `json:"instanceId"`
	UsageValue        string    `json:"usageValue"`
	BeginTime         string    `json:"beginTime"`
	EndTime           string    `json:"endTime"`
	RecordTime        string    `json:"recordTime"`
	RelatePkgInstance string    `json:"relatePkgInstance,omitempty"`
	RecordedAt        time.Time `json:"recordedAt"`
	State             string    `json:"state"`
	PushedAt          time.Time `json:"pushedAt,omitzero"`
	// Result is the marketplace's answer, or why the record was refused
	// ("rejected 007: …").
	Result string `json:"result,omitempty"`
}

// UsageFilter selects usage records: State one of the UsageState values
// ("" all), at most Limit (1–1000, default 100), newest first.
type UsageFilter struct {
	State string
	Limit int
}

// ListUsage returns the usage records of an instance (the one an alias
// duplicates) with their push outcome, newest first: how a vendor app learns
// that the marketplace refused one (unknown instance → 000003).
func (m *Merchant) ListUsage(ctx context.Context, instanceID string, f UsageFilter) ([]UsageRecordStatus, error) {
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Limit < 1 || f.Limit > 1000 {
		return nil, &kg.FieldError{Field: "limit", Reason: "must be 1 to 1000"}
	}
	cond := ""
	switch f.State {
	case "":
	case UsageStatePending:
		cond = ` AND pushed_at = 0`
	case UsageStatePushed:
		cond = ` AND pushed_at <> 0 AND push_result NOT LIKE 'rejected%'`
	case UsageStateRejected:
		cond = ` AND pushed_at <> 0 AND push_result LIKE 'rejected%'`
	default:
		return nil, &kg.FieldError{Field: "state", Reason: "must be pending, pushed or rejected"}
	}
	inst, err := loadInstance(ctx, m.db, instanceID)
	if errors.Is(err, errNotFound) {
		return nil, errNoInstance(instanceID)
	}
	if err != nil {
		return nil, err
	}
	id := inst.ID
	if inst.AliasOf != "" {
		id = inst.AliasOf
	}
	rows, err := m.db.Query(ctx, `SELECT metering_sn, instance_id, usage_value, begin_at, end_at, record_at, relate_pkg_instance, created_at, pushed_at, push_result
		FROM merchant_usage WHERE instance_id = $1`+cond+` ORDER BY created_at DESC, metering_sn DESC LIMIT $2`, id, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list usage: %w", err)
	}
	defer rows.Close()
	out := []UsageRecordStatus{}
	for rows.Next() {
		var (
			u                                   UsageRecordStatus
			begin, end, record, created, pushed int64
		)
		if err := rows.Scan(&u.MeteringSN, &u.InstanceID, &u.UsageValue, &begin, &end, &record, &u.RelatePkgInstance, &created, &pushed, &u.Result); err != nil {
			return nil, fmt.Errorf("list usage: %w", err)
		}
		u.BeginTime = time.UnixMilli(begin).UTC().Format(usageTimeLayout)
		u.EndTime = time.UnixMilli(end).UTC().Format(usageTimeLayout)
		u.RecordTime = time.UnixMilli(record).UTC().Format(usageTimeLayout)
		u.RecordedAt = time.UnixMilli(created).UTC()
		switch {
		case pushed == 0:
			u.State = UsageStatePending
		case strings.HasPrefix(u.Result, "rejected"):
			u.State = UsageStateRejected
		default:
			u.State = UsageStatePushed
		}
		if pushed != 0 {
			u.PushedAt = time.UnixMilli(pushed).UTC()
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list usage: %w", err)
	}
	return out, nil
}
