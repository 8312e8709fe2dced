package kg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Activities of the V2 basic interfaces (saas-v2.md §4).
const (
	ActivityNewInstance          = "newInstance"
	ActivityQueryInstance        = "queryInstance"
	ActivityRefreshInstance      = "refreshInstance"
	ActivityUpdateInstanceStatus = "updateInstanceStatus"
	ActivityReleaseInstance      = "releaseInstance"
	ActivityUpgradeInstance      = "upgradeInstance"
	ActivityChangeInstanceCheck  = "changeInstanceCheck"
	ActivityOrderNotify          = "orderNotify"
)

// Activities returns every basic-interface activity.
func Activities() []string {
	return []string{ActivityNewInstance, ActivityQueryInstance, ActivityRefreshInstance, ActivityUpdateInstanceStatus,
		ActivityReleaseInstance, ActivityUpgradeInstance, ActivityChangeInstanceCheck, ActivityOrderNotify}
}

// refreshInstance scenes (saas-v2.md §4.3). Other scenes are accepted as is.
const (
	SceneTrialToFormal            = "TRIAL_TO_FORMAL"
	SceneRenewal                  = "RENEWAL"
	SceneUnsubscribeRenewalPeriod = "UNSUBSCRIBE_RENEWAL_PERIOD"
	SceneRenewalChange            = "RENEWAL_CHANGE"
)

// updateInstanceStatus statuses (saas-v2.md §4.4).
const (
	StatusFreeze   = "FREEZE"
	StatusUnfreeze = "UNFREEZE"
)

// testFlag values. Absent means TestFlagReal.
const (
	TestFlagReal  = "0"
	TestFlagDebug = "1"
)

// QueryInstanceMaxIDs is the most instance IDs one queryInstance may carry.
const QueryInstanceMaxIDs = 100

// Request is a decoded basic-interface request: one of *NewInstanceRequest,
// *QueryInstanceRequest, *RefreshInstanceRequest, *UpdateInstanceStatusRequest,
// *ReleaseInstanceRequest, *UpgradeInstanceRequest, *ChangeInstanceCheckRequest,
// *OrderNotifyRequest.
type Request interface {
	ActivityName() string // the activity this request is for
	IsTest() bool         // testFlag "1": a debugging or dial-test call (sandbox data)
}

// normTestFlag applies "absent means 0" and accepts only "0" and "1".
func normTestFlag(path string, f *string) error {
	s := strings.TrimSpace(*f)
	switch s {
	case "":
		*f = TestFlagReal
	case TestFlagReal, TestFlagDebug:
		*f = s
	default:
		return &FieldError{Field: joinPath(path, "testFlag"), Reason: fmt.Sprintf("%q must be \"0\" or \"1\"", *f)}
	}
	return nil
}

// NewInstanceRequest is activity newInstance (saas-v2.md §4.1).
type NewInstanceRequest struct {
	Activity    string `json:"activity"`
	BusinessID  string `json:"businessId" kg:"req,max=64"`
	OrderID     string `json:"orderId" kg:"req,max=64"`
	OrderLineID string `json:"orderLineId" kg:"req,max=64"`
	TestFlag    string `json:"testFlag,omitempty" kg:"max=2"`
}

func (r *NewInstanceRequest) ActivityName() string    { return ActivityNewInstance }
func (r *NewInstanceRequest) IsTest() bool            { return r.TestFlag == TestFlagDebug }
func (r *NewInstanceRequest) validate(p string) error { return normTestFlag(p, &r.TestFlag) }

// QueryInstanceRequest is activity queryInstance (saas-v2.md §4.2). InstanceID
// may hold up to 100 comma-separated IDs; InstanceIDs has them split.
type QueryInstanceRequest struct {
	Activity    string   `json:"activity"`
	InstanceID  string   `json:"instanceId" kg:"req"`
	TestFlag    string   `json:"testFlag,omitempty" kg:"max=2"`
	InstanceIDs []string `json:"-"`
}

func (r *QueryInstanceRequest) ActivityName() string { return ActivityQueryInstance }
func (r *QueryInstanceRequest) IsTest() bool         { return r.TestFlag == TestFlagDebug }
func (r *QueryInstanceRequest) validate(p string) error {
	field := joinPath(p, "instanceId")
	r.InstanceIDs = r.InstanceIDs[:0]
	for _, id := range strings.Split(r.InstanceID, ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		if len([]rune(id)) > 64 {
			return &FieldError{Field: field, Reason: fmt.Sprintf("ID %.16q… is longer than 64 characters", id)}
		}
		r.InstanceIDs = append(r.InstanceIDs, id)
	}
	switch {
	case len(r.InstanceIDs) == 0:
		return &FieldError{Field: field, Reason: "is required"}
	case len(r.InstanceIDs) > QueryInstanceMaxIDs:
		return &FieldError{Field: field, Reason: fmt.Sprintf("has %d IDs, at most %d allowed", len(r.InstanceIDs), QueryInstanceMaxIDs)}
	}
	return normTestFlag(p, &r.TestFlag)
}

// RefreshInstanceRequest is activity refreshInstance (saas-v2.md §4.3).
// ExpireTime is the wire text (14 or 17 digits, UTC); Expire is its parsed value.
type RefreshInstanceRequest struct {
	Activity    string    `json:"activity"`
	ExpireTime  string    `json:"expireTime" kg:"req,max=20"`
	InstanceID  string    `json:"instanceId" kg:"req,max=64"`
	OrderID     string    `json:"orderId" kg:"req,max=64"`
	OrderLineID string    `json:"orderLineId" kg:"req,max=64"`
	ProductID   string    `json:"productId,omitempty" kg:"max=64"`
	Scene       string    `json:"scene" kg:"req,max=64"`
	TestFlag    string    `json:"testFlag,omitempty" kg:"max=2"`
	Expire      time.Time `json:"-"`
}

func (r *RefreshInstanceRequest) ActivityName() string { return ActivityRefreshInstance }
func (r *RefreshInstanceRequest) IsTest() bool         { return r.TestFlag == TestFlagDebug }
func (r *RefreshInstanceRequest) validate(p string) error {
	t, err := ParseExpireTime(strings.TrimSpace(r.ExpireTime))
	if err != nil {
		return &FieldError{Field: joinPath(p, "expireTime"), Reason: err.Error()}
	}
	r.Expire = t
	return normTestFlag(p, &r.TestFlag)
}

// KnownScene reports whether Scene is one of the documented scenes.
func (r *RefreshInstanceRequest) KnownScene() bool {
	switch r.Scene {
	case SceneTrialToFormal, SceneRenewal, SceneUnsubscribeRenewalPeriod, SceneRenewalChange:
		return true
	}
	return false
}

// UpdateInstanceStatusRequest is activity updateInstanceStatus (saas-v2.md §4.4).
type UpdateInstanceStatusRequest struct {
	Activity   string `json:"activity"`
	InstanceID string `json:"instanceId" kg:"req,max=64"`
	Status     string `json:"status" kg:"req,max=32"`
	TestFlag   string `json:"testFlag,omitempty" kg:"max=2"`
}

func (r *UpdateInstanceStatusRequest) ActivityName() string { return ActivityUpdateInstanceStatus }
func (r *UpdateInstanceStatusRequest) IsTest() bool         { return r.TestFlag == TestFlagDebug }
func (r *UpdateInstanceStatusRequest) validate(p string) error {
	switch s := strings.ToUpper(strings.TrimSpace(r.Status)); s {
	case StatusFreeze, StatusUnfreeze:
		r.Status = s
	default:
		return &FieldError{Field: joinPath(p, "status"), Reason: fmt.Sprintf("%q must be FREEZE or UNFREEZE", r.Status)}
	}
	return normTestFlag(p, &r.TestFlag)
}

// ReleaseInstanceRequest is activity releaseInstance (saas-v2.md §4.5).
// OrderID/OrderLineID are set when the release comes from an unsubscription.
type ReleaseInstanceRequest struct {
	Activity    string `json:"activity"`
	InstanceID  string `json:"instanceId" kg:"req,max=64"`
	OrderID     string `json:"orderId,omitempty" kg:"max=64"`
	OrderLineID string `json:"orderLineId,omitempty" kg:"max=64"`
	TestFlag    string `json:"testFlag,omitempty" kg:"max=2"`
}

func (r *ReleaseInstanceRequest) ActivityName() string    { return ActivityReleaseInstance }
func (r *ReleaseInstanceRequest) IsTest() bool            { return r.TestFlag == TestFlagDebug }
func (r *ReleaseInstanceRequest) validate(p string) error { return normTestFlag(p, &r.TestFlag) }

// UpgradeInstanceRequest is activity upgradeInstance (saas-v2.md §4.6).
type UpgradeInstanceRequest struct {
	Activity    string `json:"activity"`
	InstanceID  string `json:"instanceId" kg:"req,max=64"`
	OrderID     string `json:"orderId" kg:"req,max=64"`
	OrderLineID string `json:"orderLineId" kg:"req,max=64"`
	TestFlag    string `json:"testFlag,omitempty" kg:"max=2"`
}

func (r *UpgradeInstanceRequest) ActivityName() string    { return ActivityUpgradeInstance }
func (r *UpgradeInstanceRequest) IsTest() bool            { return r.TestFlag == TestFlagDebug }
func (r *UpgradeInstanceRequest) validate(p string) error { return normTestFlag(p, &r.TestFlag) }

// ChangeInstanceCheckRequest is activity changeInstanceCheck (saas-v2.md §4.7).
// The structure of productInfo is unconfirmed (§4.7, §10 item 5): it is
// accepted as an object, a list of one or more objects (the shape of Query
// Order's productInfo, §5.1), or a string holding either, and kept whole as
// received (RawProductInfo), whatever members and member types it has.
type ChangeInstanceCheckRequest struct {
	Activity    string         `json:"activity"`
	InstanceID  string         `json:"instanceId" kg:"req,max=64"`
	ProductInfo RawProductInfo `json:"productInfo" kg:"req"`
	TestFlag    string         `json:"testFlag,omitempty" kg:"max=2"`
}

func (r *ChangeInstanceCheckRequest) ActivityName() string    { return ActivityChangeInstanceCheck }
func (r *ChangeInstanceCheckRequest) IsTest() bool            { return r.TestFlag == TestFlagDebug }
func (r *ChangeInstanceCheckRequest) validate(p string) error { return normTestFlag(p, &r.TestFlag) }

// OrderNotifyRequest is activity orderNotify (saas-v2.md §4.8).
type OrderNotifyRequest struct {
	Activity    string `json:"activity"`
	OrderID     string `json:"orderId" kg:"req,max=64"`
	OrderLineID string `json:"orderLineId" kg:"req,max=64"`
	TestFlag    string `json:"testFlag,omitempty" kg:"max=2"`
}

func (r *OrderNotifyRequest) ActivityName() string    { return ActivityOrderNotify }
func (r *OrderNotifyRequest) IsTest() bool            { return r.TestFlag == TestFlagDebug }
func (r *OrderNotifyRequest) validate(p string) error { return normTestFlag(p, &r.TestFlag) }

// NewRequest returns an empty request struct for an activity, or nil.
func NewRequest(activity string) Request {
	switch activity {
	case ActivityNewInstance:
		return &NewInstanceRequest{}
	case ActivityQueryInstance:
		return &QueryInstanceRequest{}
	case ActivityRefreshInstance:
		return &RefreshInstanceRequest{}
	case ActivityUpdateInstanceStatus:
		return &UpdateInstanceStatusRequest{}
	case ActivityReleaseInstance:
		return &ReleaseInstanceRequest{}
	case ActivityUpgradeInstance:
		return &UpgradeInstanceRequest{}
	case ActivityChangeInstanceCheck:
		return &ChangeInstanceCheckRequest{}
	case ActivityOrderNotify:
		return &OrderNotifyRequest{}
	}
	return nil
}

// DecodeRequest reads the activity of a basic-interface body and decodes and
// validates it into the matching request struct. Unknown members are ignored;
// strings and numbers stand in for each other; a missing required member, an
// over-long value, an ill-typed member or an unknown activity is a
// *FieldError naming the member (→ 000002). testFlag defaults to "0".
func DecodeRequest(body []byte) (Request, error) {
	v, err := parseBody(body)
	if err != nil {
		return nil, err
	}
	return decodeRequest(v)
}

func decodeRequest(v jvalue) (Request, error) {
	av, ok := findMember(v.obj, fieldRule{name: "activity"})
	if !ok || av.kind == 'z' {
		return nil, &FieldError{Field: "activity", Reason: "is required"}
	}
	if av.kind != 's' {
		return nil, &FieldError{Field: "activity", Reason: "must be a string, got " + kindName(av.kind)}
	}
	activity := strings.TrimSpace(av.str)
	req := NewRequest(activity)
	if req == nil {
		if len(activity) > 32 {
			activity = activity[:32] + "…"
		}
		return nil, &FieldError{Field: "activity", Reason: fmt.Sprintf("unknown activity %q", activity)}
	}
	if err := decodeLenientValue(v, req); err != nil {
		return nil, err
	}
	setActivity(req, activity)
	return req, nil
}

func setActivity(r Request, a string) {
	switch x := r.(type) {
	case *NewInstanceRequest:
		x.Activity = a
	case *QueryInstanceRequest:
		x.Activity = a
	case *RefreshInstanceRequest:
		x.Activity = a
	case *UpdateInstanceStatusRequest:
		x.Activity = a
	case *ReleaseInstanceRequest:
		x.Activity = a
	case *UpgradeInstanceRequest:
		x.Activity = a
	case *ChangeInstanceCheckRequest:
		x.Activity = a
	case *OrderNotifyRequest:
		x.Activity = a
	}
}

// EncodeRequest serializes a basic-interface request the way souk's market
// sends it: compact JSON, members in alphabetical order, the activity field
// set from the request's type.
func EncodeRequest(r Request) ([]byte, error) {
	setActivity(r, r.ActivityName())
	return marshalCompact(r)
}

func marshalCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("kg: encode: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Response is the body of every basic-interface and kit response. Both
// members are always written: KooGallery's debug tool rejects a response
// without them.
type Response struct {
	ResultCode string `json:"resultCode" kg:"req,max=6"`
	ResultMsg  string `json:"resultMsg" kg:"max=255"`
}

// ResponseFor returns the response for err (nil → success), via CodeOf.
func ResponseFor(err error) Response {
	code, msg := CodeOf(err)
	return Response{ResultCode: code, ResultMsg: truncateRunes(msg, 255)}
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// NewInstanceResponse answers newInstance: 000000 (provisioned) or 000004
// (provisioning asynchronously) with the instanceId.
type NewInstanceResponse struct {
	ResultCode string `json:"resultCode" kg:"req,max=6"`
	ResultMsg  string `json:"resultMsg" kg:"max=255"`
	InstanceID string `json:"instanceId,omitempty" kg:"max=64"`
}

func (r *NewInstanceResponse) validate(p string) error {
	if (r.ResultCode == CodeSuccess || r.ResultCode == CodeInProgress) && strings.TrimSpace(r.InstanceID) == "" {
		return &FieldError{Field: joinPath(p, "instanceId"), Reason: "is required with resultCode " + r.ResultCode}
	}
	return nil
}

// QueryInstanceResponse answers queryInstance. EncryptType is set only when
// userName/password are encrypted (EncryptAES256 or EncryptAES128).
type QueryInstanceResponse struct {
	ResultCode  string         `json:"resultCode" kg:"req,max=6"`
	ResultMsg   string         `json:"resultMsg" kg:"max=255"`
	EncryptType string         `json:"encryptType,omitempty" kg:"max=3"`
	Info        []InstanceInfo `json:"info,omitempty" kg:"maxitems=100"`
}

func (r *QueryInstanceResponse) validate(p string) error {
	if r.EncryptType != "" && r.EncryptType != EncryptAES256 && r.EncryptType != EncryptAES128 {
		return &FieldError{Field: joinPath(p, "encryptType"), Reason: fmt.Sprintf("%q is not \"1\" or \"2\"", r.EncryptType)}
	}
	return nil
}

// InstanceInfo is one instance of a queryInstance answer.
type InstanceInfo struct {
	InstanceID string      `json:"instanceId" kg:"req,max=64"`
	AppInfo    *AppInfo    `json:"appInfo,omitempty"`
	UsageInfo  []UsageInfo `json:"usageInfo,omitempty"`
}

// AppInfo is how the buyer uses the instance. UserName and Password are
// plaintext or, with encryptType, EncryptCredential output (≤ 128 characters).
// Memo's non-ASCII characters must go out as \uXXXX: encode with MarshalASCII.
type AppInfo struct {
	FrontEndURL string `json:"frontEndUrl" kg:"req,max=512"`
	AdminURL    string `json:"adminUrl,omitempty" kg:"max=512"`
	UserName    string `json:"userName,omitempty" kg:"max=128"`
	Password    string `json:"password,omitempty" kg:"max=128"`
	Memo        string `json:"memo,omitempty" kg:"max=1024"`
}

// UsageInfo is the usage of a pay-per-use instance (or one billing item of a package).
type UsageInfo struct {
	RelatedInstanceID string `json:"relatedInstanceId,omitempty" kg:"max=64"`
	UsageValue        Number `json:"usageValue" kg:"req,max=20"`
	StatisticalTime   string `json:"statisticalTime" kg:"req,max=20"`
	DashboardURL      string `json:"dashboardUrl,omitempty" kg:"max=512"`
}

func (u *UsageInfo) validate(p string) error {
	if err := checkUsageValue(u.UsageValue, false); err != nil {
		return &FieldError{Field: joinPath(p, "usageValue"), Reason: err.Error()}
	}
	if _, err := ParseTime17(u.StatisticalTime); err != nil {
		return &FieldError{Field: joinPath(p, "statisticalTime"), Reason: err.Error()}
	}
	return nil
}

// checkUsageValue enforces Double(12,4) with ParseUsageValue: ≥ 0 (> 0 when
// positive), at most 4 decimals, below 1e8.
func checkUsageValue(n Number, positive bool) error {
	_, err := ParseUsageValue(string(n), positive)
	return err
}

// EncodeResponse serializes a response for the wire with MarshalASCII.
func EncodeResponse(v any) ([]byte, error) { return MarshalASCII(v) }

// DecodeResponse decodes and validates a plain {resultCode, resultMsg} answer.
func DecodeResponse(body []byte) (*Response, error) {
	var r Response
	if err := decodeLenient(body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecodeNewInstanceResponse decodes and validates a newInstance answer
// (souk market and check use it to grade merchants).
func DecodeNewInstanceResponse(body []byte) (*NewInstanceResponse, error) {
	var r NewInstanceResponse
	if err := decodeLenient(body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecodeQueryInstanceResponse decodes and validates a queryInstance answer.
func DecodeQueryInstanceResponse(body []byte) (*QueryInstanceResponse, error) {
	var r QueryInstanceResponse
	if err := decodeLenient(body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
