package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/kg"
)

// QueryOrderPath is the path of the Query Order open API (saas-v2.md §5.1).
const QueryOrderPath = kg.QueryOrderPath

// Order is an order the suite invents, in the shape Query Order returns it
// (saas-v2.md §5.1, joint-kit.md §7).
type Order = kg.OrderInfo

// APIGWindow is how far a Query Order request's X-Sdk-Date may be from the
// stub's clock (the API gateway's usual 15 minutes).
const APIGWindow = 15 * time.Minute

// MarketStub is the marketplace's Query Order open API as the suite needs it:
// GET QueryOrderPath, APIG SDK-HMAC-SHA256 signed with the seller's AK/SK,
// answering for the orders the suite publishes. Orders it does not know are
// forwarded to Upstream (a running souk market or KooGallery itself, signed
// with UpstreamAK/UpstreamSK) when set, and answered MKT.0100 otherwise.
// It is safe for concurrent use.
type MarketStub struct {
	AK, SK string
	Clock  clock.Clock
	Logger *slog.Logger

	Upstream               string // optional base URL of a running marketplace
	UpstreamAK, UpstreamSK string
	Client                 *http.Client // for Upstream; default: 10 s timeout

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

// Queried reports how many authenticated Query Order calls asked for orderID.
func (m *MarketStub) Queried(orderID string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.queried[orderID]
}

// ServeHTTP implements http.Handler.
func (m *MarketStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != QueryOrderPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		writeMkt(w, kg.MKTInvalidParam, "Invalid parameter: method must be GET", nil)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeMkt(w, kg.MKTParamError, "Request parameter error: reading the body failed", nil)
		return
	}
	_, err = kg.VerifyAPIG(r, body, func(ak string) (string, bool) {
		if ak == m.AK {
			return m.SK, true
		}
		return "", false
	}, m.Clock.Now(), APIGWindow)
	if err != nil {
		m.Logger.InfoContext(r.Context(), "check: Query Order rejected", "err", err)
		writeMkt(w, kg.MKTIllegalToken, "Illegal token: "+err.Error(), nil)
		return
	}
	q := r.URL.Query()
	id, lineID := q.Get("orderId"), q.Get("orderLineId")
	if _, err := kg.QueryOrderQuery(id, lineID); err != nil {
		writeMkt(w, kg.MKTInvalidParam, "Invalid parameter: "+err.Error(), nil)
		return
	}
	m.mu.Lock()
	o, ok := m.orders[id]
	m.queried[id]++
	m.mu.Unlock()
	if !ok {
		if m.Upstream != "" {
			m.forward(w, r, id, lineID)
			return
		}
		writeMkt(w, kg.MKTBadInput, "Failure of input parameter: order "+id+" does not exist", nil)
		return
	}
	if lineID != "" {
		var lines []kg.OrderLine
		for _, l := range o.OrderLine {
			if l.OrderLineID == lineID {
				lines = append(lines, l)
			}
		}
		if len(lines) == 0 {
			writeMkt(w, kg.MKTBadInput, "Failure of input parameter: order "+id+" has no line "+lineID, nil)
			return
		}
		o.OrderLine = lines
	}
	writeMkt(w, kg.MKTSuccess, "Success", &o)
}

// forward asks the upstream marketplace and relays its answer.
func (m *MarketStub) forward(w http.ResponseWriter, r *http.Request, id, lineID string) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	v := url.Values{"orderId": {id}}
	if lineID != "" {
		v.Set("orderLineId", lineID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(m.Upstream, "/")+QueryOrderPath+"?"+v.Encode(), nil)
	if err != nil {
		writeMkt(w, kg.MKTInternal, "System internal error: "+err.Error(), nil)
		return
	}
	if err := kg.SignAPIG(req, nil, m.UpstreamAK, m.UpstreamSK, m.Clock.Now()); err != nil {
		writeMkt(w, kg.MKTInternal, "System internal error: "+err.Error(), nil)
		return
	}
	client := m.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		m.Logger.WarnContext(ctx, "check: upstream Query Order failed", "err", err)
		writeMkt(w, kg.MKTInternal, "System internal error: upstream marketplace unreachable", nil)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		writeMkt(w, kg.MKTInternal, "System internal error: reading the upstream answer failed", nil)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(b)
}

func writeMkt(w http.ResponseWriter, code, msg string, o *Order) {
	body, err := json.Marshal(kg.QueryOrderResponse{ResultCode: code, ResultMsg: msg, OrderInfo: o})
	if err != nil {
		body = []byte(fmt.Sprintf(`{"resultCode":%q,"resultMsg":"encoding failed"}`, kg.MKTInternal))
		code = kg.MKTInternal
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(kg.MKTStatus(code))
	_, _ = w.Write(body)
}
