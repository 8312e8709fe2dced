package merchant

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/kg"
)

// Charging modes of an order line (Query Order, saas-v2.md §5.1).
const (
	ChargingOnDemand    = "ON_DEMAND"
	ChargingOnDemandPkg = "ON_DEMAND_PKG"
	ChargingOneTime     = "ONE_TIME"
	ChargingPeriod      = "PERIOD"
)

// QueryOrderPath is the path of the Query Order open API on the marketplace.
const QueryOrderPath = "/api/mkp-openapi-public/global/v1/order/query"

// Order is what souk needs from a Query Order answer. Raw keeps the whole
// orderInfo object as received, which is what the vendor app gets.
type Order struct {
	OrderID      string
	OrderType    string
	OrderLineID  string
	ChargingMode string
	ProductID    string
	SkuCode      string
	ExpireTime   string // as received (yyyyMMddHHmmss)
	Raw          json.RawMessage
}

// OnDemand reports whether the order line is pay-per-use (idempotency then
// also on orderId + productId).
func (o *Order) OnDemand() bool {
	return o.ChargingMode == ChargingOnDemand || o.ChargingMode == ChargingOnDemandPkg
}

// lenient JSON string: accepts strings and numbers.
type lstring string

func (s *lstring) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*s = ""
		return nil
	}
	if b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = lstring(v)
		return nil
	}
	*s = lstring(b)
	return nil
}

type wireProduct struct {
	ProductID lstring `json:"productId"`
	SkuCode   lstring `json:"skuCode"`
}

type wireOrderLine struct {
	OrderLineID  lstring         `json:"orderLineId"`
	ChargingMode lstring         `json:"chargingMode"`
	ExpireTime   lstring         `json:"expireTime"`
	ProductID    lstring         `json:"productId"`
	SkuCode      lstring         `json:"skuCode"`
	ProductInfo  json.RawMessage `json:"productInfo"` // an array or a single object
}

type wireOrder struct {
	OrderID      lstring         `json:"orderId"`
	OrderType    lstring         `json:"orderType"`
	ChargingMode lstring         `json:"chargingMode"`
	ExpireTime   lstring         `json:"expireTime"`
	OrderLine    json.RawMessage `json:"orderLine"` // an array or a single object
	ProductInfo  json.RawMessage `json:"productInfo"`
}

type wireOrderAnswer struct {
	ResultCode lstring         `json:"resultCode"`
	ResultMsg  lstring         `json:"resultMsg"`
	OrderInfo  json.RawMessage `json:"orderInfo"`
}

func listOf[T any](raw json.RawMessage) ([]T, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '[' {
		var out []T
		err := json.Unmarshal(raw, &out)
		return out, err
	}
	var one T
	if err := json.Unmarshal(raw, &one); err != nil {
		return nil, err
	}
	return []T{one}, nil
}

// ParseOrderAnswer reads a Query Order answer and picks the order line
// orderLineID (the only or first line when empty). A resultCode other than
// MKT.0000 (or 000000/0) is an *OrderAPIError.
func ParseOrderAnswer(body []byte, orderLineID string) (*Order, error) {
	var ans wireOrderAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("query order: answer is not JSON: %w", err)
	}
	switch string(ans.ResultCode) {
	case "MKT.0000", "000000", "0", "":
	default:
		return nil, &OrderAPIError{Code: string(ans.ResultCode), Msg: string(ans.ResultMsg)}
	}
	if len(bytes.TrimSpace(ans.OrderInfo)) == 0 || string(bytes.TrimSpace(ans.OrderInfo)) == "null" {
		return nil, &OrderAPIError{Code: string(ans.ResultCode), Msg: "answer has no orderInfo"}
	}
	return ParseOrderInfo(ans.OrderInfo, orderLineID)
}

// maxOrderInfo bounds the orderInfo of a Query Order answer that souk keeps.
const maxOrderInfo = 64 << 10

// ParseOrderInfo reads an orderInfo object.
func ParseOrderInfo(info json.RawMessage, orderLineID string) (*Order, error) {
	var w wireOrder
	if err := json.Unmarshal(info, &w); err != nil {
		return nil, fmt.Errorf("query order: orderInfo: %w", err)
	}
	o := &Order{OrderID: string(w.OrderID), OrderType: string(w.OrderType), ChargingMode: string(w.ChargingMode),
		ExpireTime: string(w.ExpireTime), Raw: append(json.RawMessage(nil), info...), OrderLineID: orderLineID}
	lines, err := listOf[wireOrderLine](w.OrderLine)
	if err != nil {
		return nil, fmt.Errorf("query order: orderLine: %w", err)
	}
	var line *wireOrderLine
	for i := range lines {
		if orderLineID == "" || string(lines[i].OrderLineID) == orderLineID {
			line = &lines[i]
			break
		}
	}
	products, err := listOf[wireProduct](w.ProductInfo)
	if err != nil {
		return nil, fmt.Errorf("query order: productInfo: %w", err)
	}
	if line != nil {
		o.OrderLineID = string(line.OrderLineID)
		if line.ChargingMode != "" {
			o.ChargingMode = string(line.ChargingMode)
		}
		if line.ExpireTime != "" {
			o.ExpireTime = string(line.ExpireTime)
		}
		o.ProductID, o.SkuCode = string(line.ProductID), string(line.SkuCode)
		lp, err := listOf[wireProduct](line.ProductInfo)
		if err != nil {
			return nil, fmt.Errorf("query order: orderLine.productInfo: %w", err)
		}
		if len(lp) > 0 {
			products = lp
		}
	} else if len(lines) > 0 {
		return nil, &OrderAPIError{Code: "NO_LINE", Msg: "order has no line " + orderLineID}
	}
	if len(products) > 0 {
		if o.ProductID == "" {
			o.ProductID = string(products[0].ProductID)
		}
		if o.SkuCode == "" {
			o.SkuCode = string(products[0].SkuCode)
		}
	}
	o.ChargingMode = strings.ToUpper(strings.TrimSpace(o.ChargingMode))
	// The answer is the marketplace's, but it is stored and handed to the
	// vendor app: the fields souk keeps are held to the lengths of the
	// protocol (ids 64, codes 32, times 20), the order to 64 KiB.
	if len(info) > maxOrderInfo {
		return nil, &OrderAPIError{Code: "INVALID", Msg: fmt.Sprintf("orderInfo is %d bytes, more than %d", len(info), maxOrderInfo)}
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"orderId", o.OrderID, 64}, {"orderLineId", o.OrderLineID, 64}, {"productId", o.ProductID, 64}, {"skuCode", o.SkuCode, 64},
		{"chargingMode", o.ChargingMode, 32}, {"orderType", o.OrderType, 32}, {"expireTime", o.ExpireTime, 20},
	} {
		if n := len([]rune(f.v)); n > f.max {
			return nil, &OrderAPIError{Code: "INVALID", Msg: fmt.Sprintf("%s is %d characters, more than %d", f.name, n, f.max)}
		}
	}
	if o.OnDemand() && o.ProductID == "" {
		return nil, &OrderAPIError{Code: "NO_PRODUCT", Msg: "pay-per-use order line has no productId"}
	}
	return o, nil
}

// OrderAPIError is a Query Order answer that says no (as opposed to a
// transport failure). It is still retried: the order may not be visible yet.
type OrderAPIError struct {
	Code string
	Msg  string
}

func (e *OrderAPIError) Error() string { return "query order: " + e.Code + ": " + e.Msg }

// OrderClient calls the marketplace's Query Order open API, APIG-signed.
type OrderClient struct {
	BaseURL string // e.g. https://mkt.myhuaweicloud.com
	// FallbackURL is tried when BaseURL cannot be reached (the CN site
	// documents https://mkt.myhuaweicloud.cn as its fallback).
	FallbackURL string
	AK, SK      string
	Client      *http.Client
	Clock       clock.Clock
}

// ErrNoMarket means no marketplace URL or AK/SK is configured.
var ErrNoMarket = errors.New("query order: SOUK_MARKET_URL, SOUK_MARKET_AK and SOUK_MARKET_SK are not all set")

// QueryOrder fetches one order line.
func (c *OrderClient) QueryOrder(ctx context.Context, orderID, orderLineID string) (*Order, error) {
	if c == nil || c.BaseURL == "" || c.AK == "" || c.SK == "" {
		return nil, ErrNoMarket
	}
	o, err := c.queryOrder(ctx, c.BaseURL, orderID, orderLineID)
	var te *transportError
	if err != nil && c.FallbackURL != "" && errors.As(err, &te) && ctx.Err() == nil {
		return c.queryOrder(ctx, c.FallbackURL, orderID, orderLineID)
	}
	return o, err
}

// transportError is a failure to reach the marketplace at all.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

func (c *OrderClient) queryOrder(ctx context.Context, base, orderID, orderLineID string) (*Order, error) {
	q := url.Values{"orderId": {orderID}}
	if orderLineID != "" {
		q.Set("orderLineId", orderLineID)
	}
	u := strings.TrimRight(base, "/") + QueryOrderPath + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("query order: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := kg.SignAPIG(req, nil, c.AK, c.SK, c.Clock.Now()); err != nil {
		return nil, fmt.Errorf("query order: sign: %w", err)
	}
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query order %s: %w", orderID, &transportError{err})
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("query order %s: read: %w", orderID, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("query order %s: HTTP %d: %.200s", orderID, resp.StatusCode, body)
	}
	o, err := ParseOrderAnswer(body, orderLineID)
	if err != nil {
		return nil, fmt.Errorf("query order %s: %w", orderID, err)
	}
	if o.OrderID == "" {
		o.OrderID = orderID
	}
	return o, nil
}

// sandboxOrder is the order souk assumes for a testFlag request whose order
// cannot be fetched: dial tests must keep passing whatever the marketplace's
// mock orders do.
func sandboxOrder(orderID, orderLineID string) *Order {
	mode := ChargingPeriod
	switch {
	case strings.HasPrefix(orderID, "MOCKONDEMAND"):
		mode = ChargingOnDemand
	case strings.HasPrefix(orderID, "MOCKONETIME"):
		mode = ChargingOneTime
	}
	raw, _ := json.Marshal(map[string]any{"orderId": orderID, "orderType": "NEW", "sandbox": true,
		"orderLine": []map[string]any{{"orderLineId": orderLineID, "chargingMode": mode,
			"productInfo": []map[string]string{{"productId": "SANDBOX", "skuCode": "SANDBOX"}}}}})
	return &Order{OrderID: orderID, OrderLineID: orderLineID, OrderType: "NEW", ChargingMode: mode, ProductID: "SANDBOX", SkuCode: "SANDBOX", Raw: raw}
}
