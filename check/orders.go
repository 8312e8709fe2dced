package check

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/kg"
)

// QueryOrderPath is the path of the Query Order open API (saas-v2.md §5.1).
const QueryOrderPath = "/api/mkp-openapi-public/global/v1/order/query"

// Order is an order the suite invents, in the shape Query Order returns
// (saas-v2.md §5.1, joint-kit.md §7).
type Order struct {
	OrderID      string        `json:"orderId"`
	OrderType    string        `json:"orderType"`  // NEW, TRIAL, TRIAL_TO_FORMAL, UNSUBSCRIBE, RENEW, CHANGE
	CreateTime   string        `json:"createTime"` // yyyyMMddHHmmss
	OrderLine    []OrderLine   `json:"orderLine"`
	BuyerInfo    *BuyerInfo    `json:"buyerInfo,omitempty"`
	ExtendParams []ExtendParam `json:"extendParams,omitempty"`
}

// OrderLine is one line of an order.
type OrderLine struct {
	OrderLineID  string        `json:"orderLineId"`
	ChargingMode string        `json:"chargingMode"`
	PeriodType   string        `json:"periodType,omitempty"`
	PeriodNumber int           `json:"periodNumber,omitempty"`
	ExpireTime   string        `json:"expireTime,omitempty"`
	ProductInfo  []ProductInfo `json:"productInfo"`
	ExtendParams []ExtendParam `json:"extendParams,omitempty"`
	Currency     string        `json:"currency,omitempty"`
}

// ProductInfo is the product of an order line.
type ProductInfo struct {
	ProductID   string `json:"productId"`
	SkuCode     string `json:"skuCode"`
	LinearValue int    `json:"linearValue,omitempty"`
	ProductName string `json:"productName,omitempty"`
}

// BuyerInfo is the customer of an order.
type BuyerInfo struct {
	CustomerID   string `json:"customerId"`
	CustomerName string `json:"customerName"`
	UserID       string `json:"userId,omitempty"`
	UserName     string `json:"userName,omitempty"`
	MobilePhone  string `json:"mobilePhone,omitempty"`
	Email        string `json:"email,omitempty"`
}

// ExtendParam is a name/value pair.
type ExtendParam struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Query Order result codes (license-api-agents.md, "查询订单 uses MKT.* codes").
const (
	mktSuccess  = "MKT.0000"
	mktBadParam = "MKT.0100"
	mktAuth     = "MKT.0150"
	mktNotFound = "MKT.9001"
)

// MarketStub is a minimal marketplace open API for the suite: it answers
// Query Order (GET QueryOrderPath, APIG SDK-HMAC-SHA256 signed with the
// seller's AK/SK) for the orders the suite publishes. It is safe for
// concurrent use.
type MarketStub struct {
	AK, SK string
	Clock  clock.Clock
	Logger *slog.Logger

	mu      sync.Mutex
	orders  map[string]Order
	queried map[string]int
}

// NewMarketStub returns a stub that accepts the given seller AK/SK.
func NewMarketStub(ak, sk string, c clock.Clock, logger *slog.Logger) *MarketStub {
	if c == nil {
		c = clock.Real{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &MarketStub{AK: ak, SK: sk, Clock: c, Logger: logger, orders: map[string]Order{}, queried: map[string]int{}}
}

// PublishOrder implements OrderPublisher.
func (m *MarketStub) PublishOrder(o Order) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.orders[o.OrderID] = o
	return nil
}

// Queried reports how many times Query Order was asked for orderID.
func (m *MarketStub) Queried(orderID string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.queried[orderID]
}

// ServeHTTP implements http.Handler.
func (m *MarketStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != QueryOrderPath && r.URL.Path != QueryOrderPath+"/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeMkt(w, http.StatusMethodNotAllowed, mktBadParam, "method not allowed", nil)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeMkt(w, http.StatusBadRequest, mktBadParam, "cannot read body", nil)
		return
	}
	_, err = kg.VerifyAPIG(r, body, func(ak string) (string, bool) {
		if ak == m.AK {
			return m.SK, true
		}
		return "", false
	}, m.Clock.Now(), 15*time.Minute)
	if err != nil {
		m.Logger.InfoContext(r.Context(), "check market stub: query order rejected", "err", err)
		writeMkt(w, http.StatusUnauthorized, mktAuth, "authentication failed: "+err.Error(), nil)
		return
	}
	id := r.URL.Query().Get("orderId")
	lineID := r.URL.Query().Get("orderLineId")
	if id == "" || len(id) > 64 || len(lineID) > 64 {
		writeMkt(w, http.StatusBadRequest, mktBadParam, "orderId is missing or too long", nil)
		return
	}
	m.mu.Lock()
	o, ok := m.orders[id]
	m.queried[id]++
	m.mu.Unlock()
	if !ok {
		writeMkt(w, http.StatusOK, mktNotFound, "order not found", nil)
		return
	}
	if lineID != "" {
		var lines []OrderLine
		for _, l := range o.OrderLine {
			if l.OrderLineID == lineID {
				lines = append(lines, l)
			}
		}
		if len(lines) == 0 {
			writeMkt(w, http.StatusOK, mktNotFound, "order line not found", nil)
			return
		}
		o.OrderLine = lines
	}
	writeMkt(w, http.StatusOK, mktSuccess, "success", &o)
}

func writeMkt(w http.ResponseWriter, status int, code, msg string, o *Order) {
	body, _ := json.Marshal(struct {
		ResultCode string `json:"resultCode"`
		ResultMsg  string `json:"resultMsg"`
		OrderInfo  *Order `json:"orderInfo,omitempty"`
	}{code, msg, o})
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
