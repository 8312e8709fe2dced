package check

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/soukhq/souk/kg"
)

// session is the state shared by the checks of one run.
type session struct {
	cfg *Config
	c   *client
}

func newSession(cfg *Config) *session {
	return &session{cfg: cfg, c: &client{cfg: cfg}}
}

// instance is an instance the suite created on the target.
type instance struct {
	ID       string
	Order    Order
	TestFlag bool
	Expire   time.Time
	Async    bool // newInstance answered 000004
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randString(n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(fmt.Sprintf("check: crypto/rand: %v", err))
		}
		b[i] = alphabet[k.Int64()]
	}
	return string(b)
}

// uuid returns a random RFC 4122 version 4 UUID, like KooGallery's businessIds.
func uuid() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("check: crypto/rand: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// orderID returns a real-looking KooGallery order id, e.g. CS2211181819B4LVS.
func (s *session) orderID() string {
	return "CS" + s.cfg.Clock.Now().UTC().Format("0601021504") + randString(5, alnum)
}

// publish is order, failing t when the order cannot be published.
func (s *session) publish(t *T, orderType string) (Order, bool) {
	o, err := s.order(orderType)
	if err != nil {
		t.fail(Finding{What: err.Error()})
		return Order{}, false
	}
	return o, true
}

// order invents an order of the given type for the product's charging mode and
// publishes it to Query Order.
func (s *session) order(orderType string) (Order, error) {
	now := s.cfg.Clock.Now().UTC()
	id := s.orderID()
	line := kg.OrderLine{
		OrderLineID:  id + "-000001",
		BusinessID:   uuid(),
		ChargingMode: s.cfg.Mode,
		TrialFlag:    "0",
		OrderAmount:  "99.00",
		Currency:     "CNY",
		ProductInfo: []kg.ProductInfo{{
			ProductID:   "OFFI" + randString(18, "0123456789"),
			SKUCode:     uuid(),
			LinearValue: "10",
			ProductName: "souk check product",
		}},
	}
	switch s.cfg.Mode {
	case ModePeriod:
		line.PeriodType = "month"
		line.PeriodNumber = "1"
		line.ExpireTime = kg.FormatTime14(kg.Expiry(now, "month", 1)) // as KooGallery bills: 23:59:59 Beijing time
	case ModeOnDemand:
		line.OrderAmount = ""
	}
	if orderType == kg.OrderTypeTrial {
		line.TrialFlag = "1"
	}
	o := Order{
		OrderID:    id,
		OrderType:  orderType,
		CreateTime: now.Format(kg.Layout14),
		OrderLine:  []kg.OrderLine{line},
		BuyerInfo: &kg.BuyerInfo{
			CustomerID:   "cid" + strings.ToLower(randString(29, alnum)),
			CustomerName: "souk-check-buyer",
			UserID:       "uid" + strings.ToLower(randString(29, alnum)),
			UserName:     "souk-check-buyer",
			MobilePhone:  "138" + randString(8, "0123456789"),
			Email:        "buyer-" + strings.ToLower(randString(6, alnum)) + "@example.com",
		},
	}
	if s.cfg.Orders != nil {
		if err := s.cfg.Orders.PublishOrder(o); err != nil {
			return Order{}, fmt.Errorf("publish order %s to Query Order: %w", id, err)
		}
	}
	return o, nil
}

// orderWithLines invents a NEW order with n lines (n products bought
// together) and publishes it to Query Order.
func (s *session) orderWithLines(n int) (Order, error) {
	o, err := s.order("NEW")
	if err != nil {
		return Order{}, err
	}
	first := o.OrderLine[0]
	for i := 2; i <= n; i++ {
		l := first
		l.OrderLineID = fmt.Sprintf("%s-%06d", o.OrderID, i)
		l.BusinessID = uuid()
		l.ProductInfo = []kg.ProductInfo{{
			ProductID:   "OFFI" + randString(18, "0123456789"),
			SKUCode:     uuid(),
			LinearValue: "10",
			ProductName: fmt.Sprintf("souk check product %d", i),
		}}
		o.OrderLine = append(o.OrderLine, l)
	}
	if s.cfg.Orders != nil {
		if err := s.cfg.Orders.PublishOrder(o); err != nil {
			return Order{}, fmt.Errorf("publish order %s to Query Order: %w", o.OrderID, err)
		}
	}
	return o, nil
}

// obj builds a JSON object with keys in the given order. Values: string →
// JSON string; json.RawMessage → verbatim; anything else → json.Marshal.
func obj(kv ...any) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(kv[i].(string))
		b.Write(k)
		b.WriteByte(':')
		switch v := kv[i+1].(type) {
		case json.RawMessage:
			b.Write(v)
		default:
			x, err := json.Marshal(v)
			if err != nil {
				panic(fmt.Sprintf("check: marshal %T: %v", v, err))
			}
			b.Write(x)
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

// withTestFlag appends "testFlag":"1" to kv when test is set.
func withTestFlag(test bool, kv ...any) []any {
	if test {
		kv = append(kv, "testFlag", "1")
	}
	return kv
}

func newInstanceBody(o Order, businessID string, test bool) []byte {
	return obj(withTestFlag(test, "activity", "newInstance", "businessId", businessID,
		"orderId", o.OrderID, "orderLineId", o.OrderLine[0].OrderLineID)...)
}

func queryBody(ids string, test bool) []byte {
	return obj(withTestFlag(test, "activity", "queryInstance", "instanceId", ids)...)
}

func statusBody(id, status string, test bool) []byte {
	return obj(withTestFlag(test, "activity", "updateInstanceStatus", "instanceId", id, "status", status)...)
}

func releaseBody(id string, test bool) []byte {
	return obj(withTestFlag(test, "activity", "releaseInstance", "instanceId", id)...)
}

func refreshBody(o Order, id, scene, expire, productID string, test bool) []byte {
	kv := []any{"activity", "refreshInstance", "orderId", o.OrderID, "orderLineId", o.OrderLine[0].OrderLineID,
		"instanceId", id, "scene", scene}
	if productID != "" {
		kv = append(kv, "productId", productID)
	}
	kv = append(kv, "expireTime", expire)
	return obj(withTestFlag(test, kv...)...)
}

func upgradeBody(o Order, id string, test bool) []byte {
	return obj(withTestFlag(test, "activity", "upgradeInstance", "instanceId", id,
		"orderId", o.OrderID, "orderLineId", o.OrderLine[0].OrderLineID)...)
}

// codeIn reports whether the exchange got a well-formed answer with one of codes.
func codeIn(x *exchange, codes ...string) bool {
	return x.Err == nil && x.Parsed != nil && slices.Contains(codes, x.Code())
}

// expect records a failure unless x answered one of codes.
func (t *T) expect(x *exchange, what, ref string, codes ...string) bool {
	if codeIn(x, codes...) {
		return true
	}
	t.fail(Finding{
		What: what + ": " + gotWhat(x),
		Sent: x.sent(), Got: x.got(),
		Want: "HTTP 200, a JSON answer with resultCode " + strings.Join(codes, " or "),
		Ref:  ref,
	})
	return false
}

// gotWhat summarises an answer in a few words.
func gotWhat(x *exchange) string {
	switch {
	case x.TimedOut:
		return "no answer within the timeout"
	case x.Err != nil:
		return "no answer (" + x.Err.Error() + ")"
	case x.TooLarge:
		return fmt.Sprintf("HTTP %d with an answer larger than %d bytes (not read further)", x.Status, maxAnswer)
	case x.Parsed == nil:
		return fmt.Sprintf("HTTP %d with a body that is not a JSON object", x.Status)
	case x.Code() == "":
		return fmt.Sprintf("HTTP %d without a string resultCode", x.Status)
	}
	return fmt.Sprintf("got resultCode %s", x.Code())
}

// create buys a fresh instance: it invents an order, sends newInstance and,
// when the merchant provisions asynchronously (000004), polls queryInstance
// until the instance is ready. Problems are recorded on t; ok is false when
// there is no usable instance.
func (s *session) create(ctx context.Context, t *T, test bool) (*instance, bool) {
	return s.createFrom(ctx, t, test, "NEW")
}

// createFrom is create with an order of the given type (NEW, or TRIAL for a
// trial order line).
func (s *session) createFrom(ctx context.Context, t *T, test bool, orderType string) (*instance, bool) {
	o, err := s.order(orderType)
	if err != nil {
		t.fail(Finding{What: err.Error()})
		return nil, false
	}
	x := s.c.send(ctx, call{body: newInstanceBody(o, uuid(), test)})
	if !t.expect(x, "newInstance was not accepted", refNew, kg.CodeSuccess, kg.CodeInProgress) {
		return nil, false
	}
	if x.Parsed.InstanceID == "" {
		t.fail(Finding{What: "newInstance answer has no instanceId", Sent: x.sent(), Got: x.got(), Want: "instanceId (String, 1-64 characters)", Ref: refNew})
		return nil, false
	}
	inst := &instance{ID: x.Parsed.InstanceID, Order: o, TestFlag: test, Async: x.Code() == kg.CodeInProgress}
	if exp, err := time.Parse(kg.Layout14, o.OrderLine[0].ExpireTime); err == nil {
		inst.Expire = exp
	} else {
		inst.Expire = kg.Expiry(s.cfg.Clock.Now(), "month", 1)
	}
	if inst.Async {
		if _, ok := s.waitReady(ctx, t, inst); !ok {
			return inst, false
		}
	}
	return inst, true
}

// waitReady polls queryInstance until the instance is listed with a 000000
// answer, at most AsyncTimeout. It returns the ready answer.
func (s *session) waitReady(ctx context.Context, t *T, inst *instance) (*exchange, bool) {
	deadline := time.Now().Add(s.cfg.AsyncTimeout)
	polls := 0
	var last *exchange
	for {
		polls++
		x := s.c.send(ctx, call{body: queryBody(inst.ID, inst.TestFlag), note: fmt.Sprintf("poll %d after 000004", polls)})
		last = x
		if listed(x, inst.ID) {
			t.note("instance %s ready after %d queryInstance poll(s)", inst.ID, polls)
			return x, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(s.cfg.PollInterval):
		}
	}
	what := fmt.Sprintf("asynchronously created instance %s was not ready after %d queryInstance polls in %v", inst.ID, polls, s.cfg.AsyncTimeout)
	if qc, ok := s.cfg.Orders.(interface{ Queried(string) int }); ok && !inst.TestFlag && qc.Queried(inst.Order.OrderID) == 0 {
		// The usual set-up mistake: the target fetches orders from another
		// marketplace, which does not know the ones check invents.
		what += fmt.Sprintf("; the target never asked check's Query Order endpoint for order %s: is its marketplace URL, AK and SK (souk merchant: SOUK_MARKET_URL, SOUK_MARKET_AK, SOUK_MARKET_SK) the ones check printed at start?", inst.Order.OrderID)
	}
	t.fail(Finding{
		What: what,
		Sent: last.sent(), Got: last.got(),
		Want: "after a 000004 answer, queryInstance answers 000000 with the instance in info once provisioning ends " +
			"(the bound is --async-timeout; the documents give no polling deadline, only the 3 h after which an unprovisioned order is unsubscribed)",
		Ref: "saas-v2.md §3 (order of calls), §4.1, §4.2, §8.1",
	})
	return last, false
}

// listed reports whether a queryInstance answer is 000000 and lists id.
func listed(x *exchange, id string) bool {
	if !codeIn(x, kg.CodeSuccess) {
		return false
	}
	for _, ii := range x.Parsed.Info {
		if ii.InstanceID == id {
			return true
		}
	}
	return false
}

// query asks for one instance.
func (s *session) query(ctx context.Context, inst *instance, note string) *exchange {
	return s.c.send(ctx, call{body: queryBody(inst.ID, inst.TestFlag), note: note})
}

// stillThere verifies with a follow-up queryInstance that a rejected request
// changed nothing: the instance is still listed.
func (s *session) stillThere(ctx context.Context, t *T, inst *instance, after *exchange, ref string) {
	q := s.query(ctx, inst, "follow-up query")
	if listed(q, inst.ID) {
		return
	}
	if !codeIn(q, kg.CodeSuccess, kg.CodeNoInstance) {
		// No usable answer (too large, not JSON, another code): the answer
		// checks judge it; whether the instance changed is unknown.
		t.warn(Finding{
			What: "could not tell whether the rejected request changed the instance: the follow-up queryInstance got " + gotWhat(q),
			Sent: after.sent() + "\nthen " + q.sent(),
			Got:  after.got() + "\nthen " + q.got(),
			Want: "a follow-up queryInstance answering 000000 with the instance",
			Ref:  ref,
		})
		return
	}
	t.fail(Finding{
		What: "a rejected request changed the instance: the follow-up queryInstance no longer lists it",
		Sent: after.sent() + "\nthen " + q.sent(),
		Got:  after.got() + "\nthen " + q.got(),
		Want: "a request that fails authentication or validation changes nothing",
		Ref:  ref,
	})
}

// nextExpire returns the instance's expiry moved one month on, as
// KooGallery renews (kg.Expiry), yyyyMMddHHmmss.
func (inst *instance) nextExpire() string {
	inst.Expire = kg.Expiry(inst.Expire, "month", 1)
	return kg.FormatTime14(inst.Expire)
}
