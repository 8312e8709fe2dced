package kg

import (
	"fmt"
	"strings"
)

// Query Order open API (saas-v2.md §5.1, joint-kit.md §8.1).
const (
	QueryOrderPath = "/api/mkp-openapi-public/global/v1/order/query"
	UsagePushPath  = "/api/mkp-openapi-public/global/v1/isv/usage-data"
)

// KooGallery open-API hosts.
const (
	HostCN         = "https://mkt.myhuaweicloud.com"
	HostCNFallback = "https://mkt.myhuaweicloud.cn"
	HostIntl       = "https://mkt-intl.myhuaweicloud.com"
	HostEU         = "https://mkt.myhuaweicloud.eu"
)

// Open-API result codes (Query Order and usage push), with the HTTP status
// KooGallery answers them with.
const (
	MKTSuccess          = "MKT.0000" // 200
	MKTInternal         = "MKT.0999" // 500
	MKTBadInput         = "MKT.0100" // 500: value out of range, illegal or badly formatted
	MKTInvalidParam     = "MKT.0101" // 400: unknown parameter, or a required one missing
	MKTInvalidBodySign  = "MKT.0102" // 400: usage push body signature wrong
	MKTParamError       = "MKT.0199" // 400: other parameter error
	MKTIllegalOperation = "MKT.0150" // 401: e.g. the instance is not this seller's
	MKTNoAuthority      = "MKT.0151" // 401: no API permission
	MKTIllegalToken     = "MKT.0154" // 401: authentication failed
	MKTRateLimited      = "MKT.0250" // 406: access frequency over limit
	MKTInstanceNotFound = "MKT.9001" // 500
	MKTInvalidUsage     = "MKT.9002" // 500: invalid usage entities
	MKTTooManyRecords   = "MKT.9003" // 500: more usage records than allowed
	MKTBeginTimeLimit   = "MKT.9004" // 500: record beginTime older than 21 days
)

// MKTStatus returns the HTTP status KooGallery uses for an open-API result code.
func MKTStatus(code string) int {
	switch code {
	case MKTSuccess:
		return 200
	case MKTInvalidParam, MKTInvalidBodySign, MKTParamError:
		return 400
	case MKTIllegalOperation, MKTNoAuthority, MKTIllegalToken:
		return 401
	case MKTRateLimited:
		return 406
	}
	return 500
}

// Order types (orderInfo.orderType).
const (
	OrderTypeNew           = "NEW"
	OrderTypeTrial         = "TRIAL"
	OrderTypeTrialToFormal = "TRIAL_TO_FORMAL"
	OrderTypeUnsubscribe   = "UNSUBSCRIBE"
	OrderTypeRenew         = "RENEW"
	OrderTypeChange        = "CHANGE"
)

// Charging modes (orderLine.chargingMode).
const (
	ChargingOnDemand    = "ON_DEMAND"
	ChargingOneTime     = "ONE_TIME"
	ChargingPeriod      = "PERIOD"
	ChargingOnDemandPkg = "ON_DEMAND_PKG"
)

// Mock order IDs that Query Order answers with fake data for debugging.
var MockOrderIDs = []string{
	"MOCKPERIODYEARNEW", "MOCKONETIMENEW", "MOCKONDEMAND", "MOCKONDEMANDPKG", "MOCKPERIODDAYTRIAL",
	"MOCKMONTYTRIALTOFORMAL", "MOCKMONTYUNSUBSCRIBE", "MOCKMONTYRENEW", "MOCKMONTYCHANGE",
}

// IsMockOrder reports whether orderID is one of KooGallery's debugging orders.
func IsMockOrder(orderID string) bool {
	for _, m := range MockOrderIDs {
		if orderID == m {
			return true
		}
	}
	return false
}

// QueryOrderResponse is the Query Order answer.
type QueryOrderResponse struct {
	ResultCode string     `json:"resultCode" kg:"req,max=16"`
	ResultMsg  string     `json:"resultMsg" kg:"max=1024"`
	OrderInfo  *OrderInfo `json:"orderInfo,omitempty"`
}

// OrderInfo is one order. Times are yyyyMMddHHmmss UTC.
type OrderInfo struct {
	OrderID      string        `json:"orderId" kg:"req,max=64"`
	OrderType    string        `json:"orderType" kg:"req,max=32"`
	CreateTime   string        `json:"createTime" kg:"max=20"`
	OrderLine    []OrderLine   `json:"orderLine"`
	BuyerInfo    *BuyerInfo    `json:"buyerInfo,omitempty"`
	ExtendParams []ExtendParam `json:"extendParams,omitempty"`
}

func (o *OrderInfo) validate(p string) error {
	if o.CreateTime != "" {
		if _, err := ParseExpireTime(o.CreateTime); err != nil {
			return &FieldError{Field: joinPath(p, "createTime"), Reason: err.Error()}
		}
	}
	return nil
}

// Line returns the order line with the given ID (or the only line when id is empty).
func (o *OrderInfo) Line(id string) (*OrderLine, bool) {
	for i := range o.OrderLine {
		if o.OrderLine[i].OrderLineID == id || (id == "" && len(o.OrderLine) == 1) {
			return &o.OrderLine[i], true
		}
	}
	return nil, false
}

// OrderLine is one line of an order. Numeric members accept numbers or strings.
type OrderLine struct {
	OrderLineID           string        `json:"orderLineId" kg:"req,max=64"`
	BusinessID            string        `json:"businessId,omitempty" kg:"max=64"`
	ChargingMode          string        `json:"chargingMode" kg:"max=25"`
	PeriodType            string        `json:"periodType,omitempty" kg:"max=32"`
	PeriodNumber          Number        `json:"periodNumber,omitempty"`
	ExpireTime            string        `json:"expireTime,omitempty" kg:"max=20"`
	TrialFlag             string        `json:"trialFlag,omitempty" kg:"max=2"`
	ProvisionType         Number        `json:"provisionType,omitempty"`
	OrderAmount           Number        `json:"orderAmount,omitempty"`
	Currency              string        `json:"currency,omitempty" kg:"max=16"`
	CurrencyAfterDiscount Number        `json:"currencyAfterDiscount,omitempty"`
	ProductInfo           []ProductInfo `json:"productInfo,omitempty"`
	ExtendParams          []ExtendParam `json:"extendParams,omitempty"`
}

func (l *OrderLine) validate(p string) error {
	if l.ExpireTime != "" {
		if _, err := ParseExpireTime(l.ExpireTime); err != nil {
			return &FieldError{Field: joinPath(p, "expireTime"), Reason: err.Error()}
		}
	}
	return nil
}

// BuyerInfo is the customer of an order.
type BuyerInfo struct {
	CustomerID       string `json:"customerId,omitempty" kg:"max=64"`
	CustomerName     string `json:"customerName,omitempty" kg:"max=256"`
	CustomerRealName string `json:"customerRealName,omitempty" kg:"max=256"`
	CustomerType     string `json:"customerType,omitempty" kg:"max=16"`
	UserID           string `json:"userId,omitempty" kg:"max=64"`
	UserName         string `json:"userName,omitempty" kg:"max=256"`
	MobilePhone      string `json:"mobilePhone,omitempty" kg:"max=32"`
	Email            string `json:"email,omitempty" kg:"max=128"`
}

// ProductInfo identifies a product and its specification (Query Order lines;
// for changeInstanceCheck, RawProductInfo.Products reads it best effort).
type ProductInfo struct {
	ProductID   string `json:"productId,omitempty" kg:"max=64"`
	SKUCode     string `json:"skuCode,omitempty" kg:"max=64"`
	LinearValue Number `json:"linearValue,omitempty"`
	ProductName string `json:"productName,omitempty" kg:"max=256"`
}

// ExtendParam is a name/value pair.
type ExtendParam struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Param returns the value of the named extend parameter.
func Param(ps []ExtendParam, name string) (string, bool) {
	for _, p := range ps {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// DecodeQueryOrderResponse decodes a Query Order answer leniently (numbers as
// strings and back, unknown members ignored) and validates it.
func DecodeQueryOrderResponse(body []byte) (*QueryOrderResponse, error) {
	var r QueryOrderResponse
	if err := decodeLenient(body, &r); err != nil {
		return nil, err
	}
	if r.ResultCode == MKTSuccess && r.OrderInfo == nil {
		return nil, &FieldError{Field: "orderInfo", Reason: "is required with resultCode " + MKTSuccess}
	}
	return &r, nil
}

// QueryOrderQuery validates Query Order parameters and returns the URL query
// (orderId, optional orderLineId).
func QueryOrderQuery(orderID, orderLineID string) (string, error) {
	if strings.TrimSpace(orderID) == "" {
		return "", &FieldError{Field: "orderId", Reason: "is required"}
	}
	if len([]rune(orderID)) > 64 {
		return "", &FieldError{Field: "orderId", Reason: "is longer than 64 characters"}
	}
	if len([]rune(orderLineID)) > 64 {
		return "", &FieldError{Field: "orderLineId", Reason: "is longer than 64 characters"}
	}
	q := "orderId=" + apigEscape(orderID)
	if orderLineID != "" {
		q += "&orderLineId=" + apigEscape(orderLineID)
	}
	return q, nil
}

// MKTResponse is the error envelope of the open APIs (resultCode/resultMsg).
type MKTResponse struct {
	ResultCode string `json:"resultCode"`
	ResultMsg  string `json:"resultMsg"`
}

func (r MKTResponse) String() string { return fmt.Sprintf("%s %s", r.ResultCode, r.ResultMsg) }
