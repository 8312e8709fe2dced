package merchant

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
)

// Provisioning phases of an instance.
const (
	PhaseAwaitingOrder = "awaiting_order" // Query Order has not answered yet
	PhaseProvisioning  = "provisioning"   // handed off, waiting for the app's appInfo
	PhaseReady         = "ready"          // appInfo known
	// PhaseFailed: the vendor app refused the create with a create-instance
	// result code (Instance.Failure), which newInstance and queryInstance
	// answer. appInfo completes the instance all the same (a recovery).
	PhaseFailed = "failed"
)

// Failure is why the vendor app refused a create: a create-instance result
// code (000100–000107, saas-v2.md §7) and its message.
type Failure struct {
	ResultCode string `json:"resultCode"`
	ResultMsg  string `json:"resultMsg,omitempty"`
}

// maxResultMsg caps a refusal's message: resultMsg is at most 255 characters
// on the wire (saas-v2.md §4.1).
const maxResultMsg = 255

// validateRefusal checks a create refusal: code exactly six digits and one of
// the create-instance codes, msg at most maxResultMsg characters.
func validateRefusal(code, msg string) error {
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		return &kg.FieldError{Field: "resultCode", Reason: fmt.Sprintf("%q is not six digits", code)}
	}
	if !kg.IsCreateCode(code) {
		return &kg.FieldError{Field: "resultCode", Reason: code + " is not a create-instance refusal code (000100–000107)"}
	}
	if utf8.RuneCountInString(msg) > maxResultMsg {
		return &kg.FieldError{Field: "resultMsg", Reason: fmt.Sprintf("is longer than %d characters", maxResultMsg)}
	}
	if !utf8.ValidString(msg) || strings.IndexByte(msg, 0) >= 0 { // stored as text, answered to KooGallery
		return &kg.FieldError{Field: "resultMsg", Reason: "must be UTF-8 text without NUL"}
	}
	return nil
}

// Lifecycle statuses of an instance.
const (
	StatusNormal   = "NORMAL"
	StatusFrozen   = "FROZEN"
	StatusReleased = "RELEASED"
)

// AppInfo is what the buyer sees: where and how to use the instance.
type AppInfo struct {
	FrontEndURL string `json:"frontEndUrl"`
	AdminURL    string `json:"adminUrl,omitempty"`
	UserName    string `json:"userName,omitempty"`
	Password    string `json:"password,omitempty"`
	Memo        string `json:"memo,omitempty"`
}

// Validate checks the documented limits; field names are prefixed by prefix
// (e.g. "appInfo.").
func (a *AppInfo) Validate(prefix string) error {
	if a == nil {
		return &kg.FieldError{Field: strings.TrimSuffix(prefix, "."), Reason: "is missing"}
	}
	if a.FrontEndURL == "" {
		return &kg.FieldError{Field: prefix + "frontEndUrl", Reason: "is required"}
	}
	check := func(name, v string, n int, isURL bool) error {
		if utf8.RuneCountInString(v) > n {
			return &kg.FieldError{Field: prefix + name, Reason: fmt.Sprintf("is longer than %d characters", n)}
		}
		if isURL && v != "" {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return &kg.FieldError{Field: prefix + name, Reason: "is not an absolute http(s) URL"}
			}
		}
		return nil
	}
	for _, c := range []struct {
		name, v string
		n       int
		url     bool
	}{
		{"frontEndUrl", a.FrontEndURL, 512, true},
		{"adminUrl", a.AdminURL, 512, true},
		{"userName", a.UserName, 128, false},
		{"password", a.Password, 128, false},
		{"memo", a.Memo, 1024, false},
	} {
		if err := check(c.name, c.v, c.n, c.url); err != nil {
			return err
		}
	}
	// The memo goes out with non-ASCII written as \uXXXX: whether
	// KooGallery counts its 1024 before or after decoding is not documented,
	// so it must fit as sent (a CJK character takes six, a quote two).
	if n := sentLen(a.Memo); n > 1024 {
		return &kg.FieldError{Field: prefix + "memo", Reason: fmt.Sprintf("is %d characters once non-ASCII is escaped as \\uXXXX (as sent); at most 1024", n)}
	}
	return nil
}

// UsageInfo is the cumulative usage of a pay-per-use instance (queryInstance).
type UsageInfo struct {
	RelatedInstanceID string      `json:"relatedInstanceId,omitempty"`
	UsageValue        json.Number `json:"usageValue"`
	StatisticalTime   string      `json:"statisticalTime"` // UTC yyyyMMddHHmmssSSS
	DashboardURL      string      `json:"dashboardUrl,omitempty"`
}

// Instance is one provisioned (or being provisioned) SaaS instance.
type Instance struct {
	ID           string          `json:"instanceId"`
	OrderID      string          `json:"orderId"`
	OrderLineID  string          `json:"orderLineId"`
	BusinessID   string          `json:"businessId"`
	TestFlag     bool            `json:"testFlag"`
	Phase        string          `json:"phase"`
	Status       string          `json:"status"`
	AliasOf      string          `json:"aliasOf,omitempty"`
	ProductID    string          `json:"productId,omitempty"`
	SkuCode      string          `json:"skuCode,omitempty"`
	ChargingMode string          `json:"chargingMode,omitempty"`
	Order        json.RawMessage `json:"order,omitempty"`
	AppInfo      *AppInfo        `json:"appInfo,omitempty"`
	UsageInfo    []UsageInfo     `json:"usageInfo,omitempty"`
	Failure      *Failure        `json:"failure,omitempty"` // phase failed: the refusal
	ExpireAt     time.Time       `json:"expireAt,omitzero"`
	CreatedAt    time.Time       `json:"createdAt"`
	UpdatedAt    time.Time       `json:"updatedAt"`
	ReadyAt      time.Time       `json:"readyAt,omitzero"`
	ReleasedAt   time.Time       `json:"releasedAt,omitzero"`
}

// querier is *db.DB or *db.Tx.
type querier interface {
	QueryRow(ctx context.Context, query string, args ...any) *sql.Row
}

const instanceColumns = `instance_id, order_id, order_line_id, business_id, test_flag, phase, status, alias_of,
	product_id, sku_code, charging_mode, order_json, app_info, usage_info, expire_at, created_at, updated_at, ready_at, released_at,
	failure_code, failure_msg`

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// errNotFound is the internal "no such row" of the store; the service maps it.
var errNotFound = errors.New("not found")

func loadInstance(ctx context.Context, q querier, id string) (*Instance, error) {
	return loadInstanceLocking(ctx, q, id, "")
}

// lockInstance is loadInstance in a read-modify-write transaction: on
// PostgreSQL the row stays locked (FOR UPDATE) until tx ends, so that a
// concurrent change of the instance by another request, replica or job waits
// for this one's commit and then reads what it wrote (READ COMMITTED would
// let both read the old row, both write, and both emit their event). SQLite
// transactions are IMMEDIATE: they run one at a time already.
func lockInstance(ctx context.Context, tx *db.Tx, id string) (*Instance, error) {
	lock := ""
	if tx.Dialect == db.Postgres {
		lock = " FOR UPDATE"
	}
	return loadInstanceLocking(ctx, tx, id, lock)
}

func loadInstanceLocking(ctx context.Context, q querier, id, lock string) (*Instance, error) {
	var (
		in                                            Instance
		tf                                            int
		orderJSON, appInfo, usageInfo                 string
		failureCode, failureMsg                       string
		expire, created, updated, readyAt, releasedAt int64
	)
	err := q.QueryRow(ctx, `SELECT `+instanceColumns+` FROM merchant_instances WHERE instance_id = $1`+lock, id).Scan(
		&in.ID, &in.OrderID, &in.OrderLineID, &in.BusinessID, &tf, &in.Phase, &in.Status, &in.AliasOf,
		&in.ProductID, &in.SkuCode, &in.ChargingMode, &orderJSON, &appInfo, &usageInfo, &expire, &created, &updated, &readyAt, &releasedAt,
		&failureCode, &failureMsg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load instance %s: %w", id, err)
	}
	in.TestFlag = tf != 0
	if orderJSON != "" {
		in.Order = json.RawMessage(orderJSON)
	}
	if appInfo != "" {
		in.AppInfo = new(AppInfo)
		if err := json.Unmarshal([]byte(appInfo), in.AppInfo); err != nil {
			return nil, fmt.Errorf("instance %s: stored appInfo: %w", id, err)
		}
	}
	if usageInfo != "" {
		if err := json.Unmarshal([]byte(usageInfo), &in.UsageInfo); err != nil {
			return nil, fmt.Errorf("instance %s: stored usageInfo: %w", id, err)
		}
	}
	if failureCode != "" {
		in.Failure = &Failure{ResultCode: failureCode, ResultMsg: failureMsg}
	}
	in.ExpireAt, in.CreatedAt, in.UpdatedAt = msTime(expire), msTime(created), msTime(updated)
	in.ReadyAt, in.ReleasedAt = msTime(readyAt), msTime(releasedAt)
	return &in, nil
}

// instanceData is the data of instance.* events.
func instanceData(in *Instance, extra map[string]any) map[string]any {
	d := map[string]any{
		"instanceId":   in.ID,
		"orderId":      in.OrderID,
		"orderLineId":  in.OrderLineID,
		"businessId":   in.BusinessID,
		"testFlag":     in.TestFlag,
		"status":       in.Status,
		"productId":    in.ProductID,
		"skuCode":      in.SkuCode,
		"chargingMode": in.ChargingMode,
	}
	if !in.ExpireAt.IsZero() {
		d["expireTime"] = in.ExpireAt.UTC().Format(time.RFC3339)
	}
	if len(in.Order) > 0 {
		d["order"] = in.Order
	}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

// statisticalTime formats t as yyyyMMddHHmmssSSS UTC.
func statisticalTime(t time.Time) string {
	t = t.UTC()
	return t.Format("20060102150405") + fmt.Sprintf("%03d", t.Nanosecond()/1e6)
}

// sentLen is the length of s as a JSON string on the wire, quotes left out:
// kg's own encoder (non-ASCII as \uXXXX, surrogate pairs beyond the BMP,
// JSON escapes such as \").
func sentLen(s string) int {
	b, err := kg.MarshalASCII(s)
	if err != nil {
		return len(s) * 12 // cannot happen for a string; never under the real length
	}
	return len(b) - 2
}
