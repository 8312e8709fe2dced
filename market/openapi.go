package market

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
)

// APIGWindow is how far an open-API request's X-Sdk-Date may be from the
// market's wire clock (APIG's usual 15 minutes).
const APIGWindow = 15 * time.Minute

// UsageWindow is how far a usage push's ts may be from the wire clock; its
// nonce is remembered twice as long.
const UsageWindow = 5 * time.Minute

// UsageMaxAge is how old a usage record's begin_time may be (MKT.9004: 21 days).
const UsageMaxAge = 21 * 24 * time.Hour

func writeMKT(w http.ResponseWriter, code, msg string, extra any) {
	body := map[string]any{"resultCode": code, "resultMsg": msg}
	if extra != nil {
		body["extra_info"] = extra
	}
	writeJSON(w, kg.MKTStatus(code), body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"internal","message":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// handleQueryOrder serves GET /api/mkp-openapi-public/global/v1/order/query,
// APIG-signed with the seller's AK/SK.
func (m *Market) handleQueryOrder(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodGet {
		auditMKT(w, r, kg.MKTInvalidParam, "Invalid parameter: method must be GET", nil)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		auditMKT(w, r, kg.MKTParamError, "Request parameter error: reading the body failed", nil)
		return
	}
	sellerID, err := m.verifyAPIG(ctx, r, body)
	if err != nil {
		auditMKT(w, r, kg.MKTIllegalToken, "Illegal token: "+err.Error(), nil)
		return
	}
	q := r.URL.Query()
	orderID, lineID := q.Get("orderId"), q.Get("orderLineId")
	if _, err := kg.QueryOrderQuery(orderID, lineID); err != nil {
		// KooGallery's code table: MKT.0101 is a parameter the interface does
		// not define or a required one missing; MKT.0100 a value out of range,
		// illegal or badly formatted — an orderId or orderLineId over its 64
		// characters (huaweicloud.com/guide/productsdesc-bms_0dff4d8a9ede975f6674698a8064dbbesupport0).
		if strings.TrimSpace(orderID) == "" {
			auditMKT(w, r, kg.MKTInvalidParam, "Invalid parameter: "+err.Error(), nil)
		} else {
			auditMKT(w, r, kg.MKTBadInput, "Failure of input parameter: "+err.Error(), nil)
		}
		return
	}
	NoteAudit(ctx, "", "", map[string]string{"seller": sellerID, "orderId": orderID, "orderLineId": lineID})
	info, code, msg := m.QueryOrder(ctx, sellerID, orderID, lineID)
	NoteAudit(ctx, "", code, nil)
	resp := kg.QueryOrderResponse{ResultCode: code, ResultMsg: msg, OrderInfo: info}
	writeJSON(w, kg.MKTStatus(code), resp)
}

// verifyAPIG checks an open-API request's SDK-HMAC-SHA256 signature and
// returns the seller whose AK signed it.
func (m *Market) verifyAPIG(ctx context.Context, r *http.Request, body []byte) (string, error) {
	var sellerID string
	var lookupErr error
	_, err := kg.VerifyAPIG(r, body, func(ak string) (string, bool) {
		s, sk, ok, err := m.credential(ctx, ak)
		if err != nil {
			lookupErr = err
			return "", false
		}
		sellerID = s
		return sk, ok
	}, m.wire.Now(), APIGWindow)
	if lookupErr != nil {
		return "", lookupErr
	}
	if err != nil {
		return "", err
	}
	return sellerID, nil
}

// QueryOrder answers Query Order for a seller: the order as KooGallery
// returns it, or an MKT result code. The documented MOCK… orders return
// fixed debugging data to any seller.
func (m *Market) QueryOrder(ctx context.Context, sellerID, orderID, lineID string) (*kg.OrderInfo, string, string) {
	if kg.IsMockOrder(orderID) {
		info := mockOrder(orderID, m.clock.Now())
		if lineID != "" && lineID != info.OrderLine[0].OrderLineID {
			return nil, kg.MKTBadInput, "Failure of input parameter: order " + orderID + " has no line " + lineID
		}
		return info, kg.MKTSuccess, "Success"
	}
	o, err := m.GetOrder(ctx, orderID)
	if IsNotFound(err) {
		return nil, kg.MKTBadInput, "Failure of input parameter: order " + orderID + " does not exist"
	}
	if err != nil {
		m.log.ErrorContext(ctx, "market: query order", "order", orderID, "err", err)
		return nil, kg.MKTInternal, "System internal error."
	}
	if o.SellerID != sellerID {
		return nil, kg.MKTIllegalOperation, "Illegal operation: order " + orderID + " is not a product of this seller"
	}
	if lineID != "" && (len(o.Lines) == 0 || o.Lines[0].OrderLineID != lineID) {
		return nil, kg.MKTBadInput, "Failure of input parameter: order " + orderID + " has no line " + lineID
	}
	c, err := m.GetCustomer(ctx, o.CustomerID)
	if err != nil {
		return nil, kg.MKTInternal, "System internal error."
	}
	p, err := m.GetProduct(ctx, o.ProductID)
	if err != nil {
		return nil, kg.MKTInternal, "System internal error."
	}
	var businessID string
	if o.OrderType == OrderNew || o.OrderType == OrderTrial {
		if s, err := m.GetSubscription(ctx, o.SubscriptionID); err == nil {
			businessID = s.BusinessID
		}
	}
	return orderInfo(o, c, p, businessID), kg.MKTSuccess, "Success"
}

// Yuan formats cents as a decimal amount.
func Yuan(cents int64) string {
	neg := cents < 0
	if neg {
		cents = -cents
	}
	s := fmt.Sprintf("%d.%02d", cents/100, cents%100)
	if neg {
		s = "-" + s
	}
	return s
}

func orderInfo(o Order, c Customer, p Product, businessID string) *kg.OrderInfo {
	info := &kg.OrderInfo{
		OrderID:    o.OrderID,
		OrderType:  o.OrderType,
		CreateTime: kg.FormatTime14(o.CreatedAt),
		BuyerInfo: &kg.BuyerInfo{CustomerID: c.ID, CustomerName: c.Name, UserID: c.UserID, UserName: c.UserName,
			MobilePhone: c.MobilePhone, Email: c.Email},
	}
	for _, e := range o.ExtendParams {
		info.ExtendParams = append(info.ExtendParams, kg.ExtendParam{Name: e.Name, Value: e.Value})
	}
	for _, l := range o.Lines {
		amount := l.AmountCents
		if o.OrderType == OrderUnsubscribe {
			amount = o.RefundCents
		}
		kl := kg.OrderLine{
			OrderLineID:  l.OrderLineID,
			BusinessID:   businessID,
			ChargingMode: l.ChargingMode,
			PeriodType:   l.PeriodType,
			TrialFlag:    "0",
			OrderAmount:  kg.Number(Yuan(amount)),
			Currency:     "CNY",
			ProductInfo:  []kg.ProductInfo{{ProductID: l.ProductCode, SKUCode: l.SKUCode, ProductName: p.Name}},
		}
		if l.PeriodNumber > 0 {
			kl.PeriodNumber = kg.Number(strconv.Itoa(l.PeriodNumber))
		}
		if l.LinearValue > 0 {
			kl.ProductInfo[0].LinearValue = kg.Number(strconv.FormatInt(l.LinearValue, 10))
		}
		if !l.ExpireAt.IsZero() {
			kl.ExpireTime = kg.FormatTime14(l.ExpireAt)
		}
		if l.Trial {
			kl.TrialFlag = "1"
		}
		info.OrderLine = append(info.OrderLine, kl)
	}
	return info
}

// mockOrder returns the debugging data of a MOCK… order.
func mockOrder(id string, now time.Time) *kg.OrderInfo {
	typ, mode, period, n, trial := kg.OrderTypeNew, kg.ChargingPeriod, "year", 1, "0"
	switch id {
	case "MOCKONETIMENEW":
		mode, period, n = kg.ChargingOneTime, "", 0
	case "MOCKONDEMAND":
		mode, period, n = kg.ChargingOnDemand, "", 0
	case "MOCKONDEMANDPKG":
		mode, period = kg.ChargingOnDemandPkg, "month"
	case "MOCKPERIODDAYTRIAL":
		typ, period, n, trial = kg.OrderTypeTrial, "day", 7, "1"
	case "MOCKMONTYTRIALTOFORMAL":
		typ, period = kg.OrderTypeTrialToFormal, "month"
	case "MOCKMONTYUNSUBSCRIBE":
		typ, period = kg.OrderTypeUnsubscribe, "month"
	case "MOCKMONTYRENEW":
		typ, period = kg.OrderTypeRenew, "month"
	case "MOCKMONTYCHANGE":
		typ, period = kg.OrderTypeChange, "month"
	}
	line := kg.OrderLine{
		OrderLineID:  id + "-000001",
		ChargingMode: mode,
		PeriodType:   period,
		TrialFlag:    trial,
		OrderAmount:  "0.00",
		Currency:     "CNY",
		ProductInfo:  []kg.ProductInfo{{ProductID: "MOCKPRODUCTID", SKUCode: "MOCKSKUCODE", LinearValue: "1", ProductName: "mock product"}},
	}
	if n > 0 {
		line.PeriodNumber = kg.Number(strconv.Itoa(n))
		line.ExpireTime = kg.FormatTime14(kg.Expiry(now, period, n))
	}
	if typ == kg.OrderTypeUnsubscribe {
		line.ExpireTime = kg.FormatTime14(now)
	}
	return &kg.OrderInfo{
		OrderID:    id,
		OrderType:  typ,
		CreateTime: kg.FormatTime14(now),
		OrderLine:  []kg.OrderLine{line},
		BuyerInfo: &kg.BuyerInfo{CustomerID: "MOCKCUSTOMERID", CustomerName: "mock customer", UserID: "MOCKUSERID", UserName: "mockuser",
			MobilePhone: "13800000000", Email: "mock@example.com"},
	}
}

// usageSellerByKey returns the seller, other than those already tried,
// whose basic key verifies a usage push, or "".
func (m *Market) usageSellerByKey(ctx context.Context, tried []string, v *kg.UsageVerifier) (string, error) {
	rows, err := m.db.Query(ctx, `SELECT seller_id, secret FROM market_access_keys WHERE key_type = $1 ORDER BY seller_id`, KeyBasic)
	if err != nil {
		return "", fmt.Errorf("market: usage push keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sid, key string
		if err := rows.Scan(&sid, &key); err != nil {
			return "", fmt.Errorf("market: usage push keys: %w", err)
		}
		if contains(tried, sid) {
			continue
		}
		if _, err := v.Verify(key); err == nil {
			return sid, nil
		}
	}
	return "", rows.Err()
}

// UsageFailure is a usage record the market refused.
type UsageFailure struct {
	Index      int    `json:"index"`
	MeteringSN string `json:"metering_sn,omitempty"`
	ErrorCode  string `json:"error_code"`
	ErrorMsg   string `json:"error_msg"`
}

// UsageResult is the outcome of a usage push.
type UsageResult struct {
	Accepted   int            `json:"accepted"`
	Duplicates int            `json:"duplicates"`
	Failed     []UsageFailure `json:"failed,omitempty"`
}

// maxUsagePush bounds a usage-push body.
const maxUsagePush = 1 << 20

// handleUsagePush serves POST /api/mkp-openapi-public/global/v1/isv/usage-data.
func (m *Market) handleUsagePush(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodPost {
		auditMKT(w, r, kg.MKTInvalidParam, "Invalid parameter: method must be POST", nil)
		return
	}
	// 1,000 records (the most one push may carry) with every member at its
	// longest take about 370 KB; a larger body is parsed for nobody.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxUsagePush+1))
	if err != nil || len(body) > maxUsagePush {
		auditMKT(w, r, kg.MKTParamError, "Request parameter error: body unreadable or larger than 1 MiB", nil)
		return
	}
	res, code, msg := m.PushUsage(ctx, r.Header.Get("signature"), r.Header.Get("ts"), r.Header.Get("nonce"), body)
	NoteAudit(ctx, "", code, nil)
	out := map[string]any{"resultCode": code, "resultMsg": msg, "error_code": code, "error_msg": msg}
	if res != nil && code != kg.MKTSuccess {
		// KooGallery's open APIs carry extra_info only in failure answers
		// (MKT.0100, 0150, 0250, 9001, 9002, 9004, 9005); a successful push
		// is answered {"error_code":"MKT.0000","error_msg":"success"} alone
		// (huaweicloud.com/guide/productsdesc-bms_0dff4d8a9ede975f6674698a8064dbbesupport0,
		// productsdesc-bms_93eaf7b60423d9d66244ab3673314e1bsupport0).
		out["extra_info"] = res
	}
	writeJSON(w, kg.MKTStatus(code), out)
}

// PushUsage verifies and stores a usage push. Records are idempotent by
// metering_sn: a record sent again with the same content is a duplicate
// (accepted, not billed twice); the same metering_sn with other content is
// refused with 005. Well-formed records of the push are stored even when
// others fail; the answer is MKT.9002 with the failures listed.
func (m *Market) PushUsage(ctx context.Context, signature, ts, nonce string, body []byte) (*UsageResult, string, string) {
	if signature == "" || ts == "" || nonce == "" {
		return nil, kg.MKTInvalidParam, "Invalid parameter: headers signature, ts and nonce are required"
	}
	if len(nonce) > 64 || len(ts) > 20 || len(signature) > 1000 {
		return nil, kg.MKTBadInput, "Failure of input parameter: header too long (nonce ≤ 64, ts ≤ 20, signature ≤ 1000)"
	}
	tsv, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, kg.MKTBadInput, "Failure of input parameter: ts is not Unix milliseconds"
	}
	wire := m.wire.Now()
	if d := wire.Sub(time.UnixMilli(tsv)); d > UsageWindow || -d > UsageWindow {
		return nil, kg.MKTIllegalToken, fmt.Sprintf("Illegal token: ts is %s away from now (window %s)", d.Truncate(time.Second), UsageWindow)
	}
	req, bad, err := kg.DecodeUsagePush(body)
	if err != nil {
		return nil, kg.MKTBadInput, "Failure of input parameter: " + err.Error()
	}
	if len(req.UsageRecords) == 0 {
		return nil, kg.MKTBadInput, "Failure of input parameter: usage_records is empty"
	}
	if len(req.UsageRecords) > kg.UsagePushMaxRecords {
		return nil, kg.MKTTooManyRecords, fmt.Sprintf("Usage records extends size limit: %d records, at most %d", len(req.UsageRecords), kg.UsagePushMaxRecords)
	}
	// The push names no seller: the key that verifies it is the basic key of
	// the seller owning the records' instances.
	subs := map[string]Subscription{}
	var sellers []string
	for _, rec := range req.UsageRecords {
		if _, seen := subs[rec.InstanceID]; seen || rec.InstanceID == "" {
			continue
		}
		s, ok, err := m.subByInstance(ctx, rec.InstanceID)
		if err != nil {
			return nil, kg.MKTInternal, "System internal error."
		}
		subs[rec.InstanceID] = s
		if ok && !contains(sellers, s.SellerID) {
			sellers = append(sellers, s.SellerID)
		}
	}
	sellerID := ""
	verifier := kg.NewUsageVerifier(signature, ts, nonce, body)
	for _, sid := range sellers {
		key, err := m.accessKey(ctx, sid, KeyBasic)
		if err != nil {
			continue
		}
		if _, err := verifier.Verify(key); err == nil {
			sellerID = sid
			break
		}
	}
	if sellerID == "" {
		// None of the records names an instance of a seller whose key
		// verifies the push (unknown instances, or only other sellers'): the
		// push carries no AK or seller id (§5.2), so the key is found among
		// every seller's basic key, and the records get their per-record
		// codes (001, 009) instead of a signature error.
		sid, err := m.usageSellerByKey(ctx, sellers, verifier)
		if err != nil {
			return nil, kg.MKTInternal, "System internal error."
		}
		sellerID = sid
	}
	if sellerID != "" {
		NoteAudit(ctx, "seller:"+sellerID, "", map[string]string{"seller": sellerID})
	}
	if sellerID == "" {
		return nil, kg.MKTInvalidBodySign, "Invalid body signature: no seller's basic key verifies it"
	}
	badAt := map[int]*kg.UsageRecordError{}
	for _, b := range bad {
		badAt[b.Index] = b
	}
	result := &UsageResult{}
	now := m.clock.Now()
	err = m.db.Tx(ctx, func(tx *db.Tx) error {
		*result = UsageResult{}
		if _, err := tx.Exec(ctx, `DELETE FROM market_nonces WHERE seen_at < $1`, db.Millis(wire.Add(-2*UsageWindow))); err != nil {
			return err
		}
		r, err := tx.Exec(ctx, `INSERT INTO market_nonces (nonce, seen_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING`, "usage:"+nonce, db.Millis(wire))
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return errReplay
		}
		for i, rec := range req.UsageRecords {
			fail := func(code, msg string) {
				result.Failed = append(result.Failed, UsageFailure{Index: i, MeteringSN: rec.MeteringSN, ErrorCode: code, ErrorMsg: msg})
			}
			if b := badAt[i]; b != nil {
				fail(b.Code, b.Field+": "+b.Msg)
				continue
			}
			s := subs[rec.InstanceID]
			switch {
			case s.ID == "":
				fail(kg.UsageErrInstanceNotFound, "instance "+rec.InstanceID+" does not exist")
				continue
			case s.SellerID != sellerID:
				fail(kg.UsageErrNotSellers, "instance "+rec.InstanceID+" does not belong to this seller")
				continue
			case s.ChargingMode != ModeOnDemand && s.ChargingMode != ModeOnDemandPkg:
				fail(kg.UsageErrNotOnDemand, "instance "+rec.InstanceID+" is "+s.ChargingMode+", not pay-per-use")
				continue
			case s.Status != SubActive:
				fail(kg.UsageErrInstanceStatus, "instance "+rec.InstanceID+" is "+s.Status)
				continue
			}
			begin, _ := kg.ParseUsageTime(rec.BeginTime)
			end, _ := kg.ParseUsageTime(rec.EndTime)
			recTime, _ := kg.ParseUsageTime(rec.RecordTime)
			if now.Sub(begin) > UsageMaxAge {
				fail(kg.UsageErrRecordExpired, "begin_time is more than 21 days ago")
				continue
			}
			if end.After(now.Add(UsageWindow)) {
				fail(kg.UsageErrTimeRange, "end_time is in the future")
				continue
			}
			if rec.RelatePkgInstance != "" {
				ps, ok, err := subByInstanceTx(ctx, tx, rec.RelatePkgInstance)
				if err != nil {
					return err
				}
				if !ok || ps.CustomerID != s.CustomerID || ps.ChargingMode != ModeOnDemandPkg {
					fail(kg.UsageErrInstanceNotFound, "relate_pkg_instance "+rec.RelatePkgInstance+" is not a package of this customer")
					continue
				}
			}
			micros, err := ParseMicros(rec.UsageValue)
			if err != nil || micros <= 0 {
				fail(kg.UsageErrUsageAbnormal, "usage_value must be a positive number with at most 4 decimals")
				continue
			}
			var amount int64
			if s.ChargingMode == ModeOnDemand && rec.RelatePkgInstance == "" {
				var unit int64
				if err := tx.QueryRow(ctx, `SELECT unit_price_micros FROM market_plans WHERE product_code = $1`, s.ProductCode).Scan(&unit); err != nil {
					return err
				}
				amount = mulMicros(micros, unit)
			}
			ins, err := tx.Exec(ctx, `INSERT INTO market_usage (metering_sn, seller_id, subscription_id, instance_id, customer_id, record_time,
				begin_time, end_time, usage_value, usage_micros, amount_micros, relate_pkg, received_at)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) ON CONFLICT (metering_sn) DO NOTHING`,
				rec.MeteringSN, sellerID, s.ID, rec.InstanceID, s.CustomerID, db.Millis(recTime), db.Millis(begin), db.Millis(end), rec.UsageValue, micros, amount,
				rec.RelatePkgInstance, db.Millis(now))
			if err != nil {
				return err
			}
			if n, _ := ins.RowsAffected(); n == 0 {
				var inst string
				var b, e, u int64
				if err := tx.QueryRow(ctx, `SELECT instance_id, begin_time, end_time, usage_micros FROM market_usage WHERE metering_sn = $1`,
					rec.MeteringSN).Scan(&inst, &b, &e, &u); err != nil {
					return err
				}
				if inst == rec.InstanceID && b == db.Millis(begin) && e == db.Millis(end) && u == micros {
					result.Duplicates++
				} else {
					fail(kg.UsageErrDuplicateSN, "metering_sn "+rec.MeteringSN+" was already used for another record")
				}
				continue
			}
			if amount > 0 {
				if err := m.charge(ctx, tx, now, s.CustomerID, "", s.ID, "usage", "usage:"+rec.MeteringSN, amount,
					"usage "+rec.UsageValue+" of "+rec.InstanceID+" "+rec.BeginTime+"–"+rec.EndTime); err != nil {
					return err
				}
			}
			result.Accepted++
		}
		return nil
	})
	if errors.Is(err, errReplay) {
		return nil, kg.MKTIllegalToken, "Illegal token: nonce already used"
	}
	if err != nil {
		m.log.ErrorContext(ctx, "market: usage push", "err", err)
		return nil, kg.MKTInternal, "System internal error."
	}
	if len(result.Failed) > 0 {
		return result, kg.MKTInvalidUsage, fmt.Sprintf("Invalid usage enties: %d of %d records refused", len(result.Failed), len(req.UsageRecords))
	}
	return result, kg.MKTSuccess, "Success"
}

var errReplay = errors.New("market: nonce replayed")

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (m *Market) subByInstance(ctx context.Context, instanceID string) (Subscription, bool, error) {
	rows, err := m.db.Query(ctx, `SELECT `+subCols+` FROM market_subscriptions WHERE instance_id = $1 ORDER BY created_at DESC LIMIT 1`, instanceID)
	if err != nil {
		return Subscription{}, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return Subscription{}, false, rows.Err()
	}
	s, err := scanSub(rows)
	return s, err == nil, err
}

func subByInstanceTx(ctx context.Context, tx *db.Tx, instanceID string) (Subscription, bool, error) {
	rows, err := tx.Query(ctx, `SELECT `+subCols+` FROM market_subscriptions WHERE instance_id = $1 ORDER BY created_at DESC LIMIT 1`, instanceID)
	if err != nil {
		return Subscription{}, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return Subscription{}, false, rows.Err()
	}
	s, err := scanSub(rows)
	return s, err == nil, err
}

// ParseMicros parses a non-negative decimal with at most 6 decimals (usage
// values have at most 4) into millionths, exactly.
func ParseMicros(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty number")
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || len(intPart) > 12 || (hasDot && (frac == "" || len(frac) > 6)) {
		return 0, fmt.Errorf("%q is not a decimal with at most 12 integer and 6 fraction digits", s)
	}
	var v int64
	for _, c := range intPart {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
		v = v*10 + int64(c-'0')
	}
	f := frac + strings.Repeat("0", 6-len(frac))
	for _, c := range f {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
		v = v*10 + int64(c-'0')
	}
	return v, nil
}

// mulMicros multiplies a quantity in micros by a unit price in micros and
// returns micros, rounding half up, without overflow for realistic values.
func mulMicros(qty, unit int64) int64 {
	hi := (qty / 1_000_000) * unit
	lo := (qty%1_000_000*unit + 500_000) / 1_000_000
	return hi + lo
}
