package market

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/kg"
)

// APIPrefix is the prefix of the market's admin JSON API.
const APIPrefix = "/api/v1"

// Router is the market's HTTP handler: the open APIs merchants call at their
// documented paths, and the admin JSON API under /api/v1 (bearer admin
// token). Other components mount extra handlers on it with Handle, wrapping
// admin-only ones with Admin.
type Router struct {
	m     *Market
	token string
	mux   *http.ServeMux
}

// Handler returns the market's router. adminToken protects /api/v1; when it
// is empty the admin API answers 503.
func (m *Market) Handler(adminToken string) *Router {
	rt := &Router{m: m, token: adminToken, mux: http.NewServeMux()}
	mux := rt.mux
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc(kg.QueryOrderPath, m.handleQueryOrder)
	mux.HandleFunc(kg.UsagePushPath, m.handleUsagePush)

	a := func(pattern string, h func(w http.ResponseWriter, r *http.Request) (any, error)) {
		mux.HandleFunc(pattern, rt.Admin(func(w http.ResponseWriter, r *http.Request) {
			v, err := h(w, r)
			if err != nil {
				writeError(w, r, m, err)
				return
			}
			status := http.StatusOK
			if r.Method == http.MethodPost && strings.Count(pattern, "/") <= 3 {
				status = http.StatusCreated
			}
			writeJSON(w, status, v)
		}))
	}
	p := APIPrefix
	a("POST "+p+"/sellers", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in struct{ ID, Name string }
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		return m.CreateSeller(r.Context(), in.ID, in.Name)
	})
	a("GET "+p+"/sellers", func(w http.ResponseWriter, r *http.Request) (any, error) { return orEmpty(m.ListSellers(r.Context())) })
	a("GET "+p+"/sellers/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return m.GetSeller(r.Context(), r.PathValue("id"))
	})
	a("POST "+p+"/sellers/{id}/addresses", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in struct {
			URL string `json:"url"`
		}
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		return m.AddAddress(r.Context(), r.PathValue("id"), in.URL)
	})
	a("GET "+p+"/sellers/{id}/addresses", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return orEmpty(m.ListAddresses(r.Context(), r.PathValue("id")))
	})
	a("POST "+p+"/addresses/{id}/verify", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return m.VerifyAddress(r.Context(), r.PathValue("id"))
	})
	a("PUT "+p+"/sellers/{id}/keys/{type}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in struct {
			Secret string `json:"secret"`
		}
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		return m.SetAccessKey(r.Context(), r.PathValue("id"), r.PathValue("type"), in.Secret)
	})
	a("GET "+p+"/sellers/{id}/keys", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return orEmpty(m.ListAccessKeys(r.Context(), r.PathValue("id")))
	})
	a("POST "+p+"/sellers/{id}/credentials", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in struct{ AK, SK string }
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		return m.CreateCredential(r.Context(), r.PathValue("id"), in.AK, in.SK)
	})
	a("POST "+p+"/products", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in ProductInput
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		return m.CreateProduct(r.Context(), in)
	})
	a("GET "+p+"/products", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return orEmpty(m.ListProducts(r.Context(), r.URL.Query().Get("sellerId")))
	})
	a("GET "+p+"/catalog", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return orEmpty(m.Catalog(r.Context()))
	})
	a("GET "+p+"/products/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return m.GetProduct(r.Context(), r.PathValue("id"))
	})
	a("POST "+p+"/customers", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in Customer
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		return m.CreateCustomer(r.Context(), in)
	})
	a("GET "+p+"/customers", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return orEmpty(m.ListCustomers(r.Context()))
	})
	a("GET "+p+"/customers/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return m.GetCustomer(r.Context(), r.PathValue("id"))
	})
	a("GET "+p+"/customers/{id}/resources", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return orEmpty(m.Resources(r.Context(), r.PathValue("id")))
	})
	a("GET "+p+"/customers/{id}/bill", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return m.GetBill(r.Context(), r.PathValue("id"))
	})
	a("POST "+p+"/orders", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in BuyInput
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		return m.Buy(r.Context(), in)
	})
	a("GET "+p+"/orders", func(w http.ResponseWriter, r *http.Request) (any, error) {
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		return orEmpty(m.ListOrders(r.Context(), q.Get("customerId"), q.Get("subscriptionId"), limit))
	})
	a("GET "+p+"/orders/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return m.GetOrder(r.Context(), r.PathValue("id"))
	})
	a("GET "+p+"/subscriptions", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return orEmpty(m.ListSubscriptions(r.Context(), r.URL.Query().Get("customerId")))
	})
	a("GET "+p+"/subscriptions/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return m.GetSubscription(r.Context(), r.PathValue("id"))
	})
	a("GET "+p+"/subscriptions/{id}/resource", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return m.Resource(r.Context(), r.PathValue("id"))
	})
	a("POST "+p+"/subscriptions/{id}/renew", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in RenewInput
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		in.SubscriptionID = r.PathValue("id")
		return m.Renew(r.Context(), in)
	})
	a("POST "+p+"/subscriptions/{id}/convert", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in ConvertInput
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		in.SubscriptionID = r.PathValue("id")
		return m.ConvertTrial(r.Context(), in)
	})
	a("POST "+p+"/subscriptions/{id}/upgrade", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in UpgradeInput
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		in.SubscriptionID = r.PathValue("id")
		return m.Upgrade(r.Context(), in)
	})
	a("POST "+p+"/subscriptions/{id}/unsubscribe", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in UnsubscribeInput
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		in.SubscriptionID = r.PathValue("id")
		return m.Unsubscribe(r.Context(), in)
	})
	a("POST "+p+"/subscriptions/{id}/cancel-renewal", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return m.CancelRenewal(r.Context(), r.PathValue("id"))
	})
	a("POST "+p+"/subscriptions/{id}/freeze", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return m.SetFrozen(r.Context(), r.PathValue("id"), true)
	})
	a("POST "+p+"/subscriptions/{id}/unfreeze", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return m.SetFrozen(r.Context(), r.PathValue("id"), false)
	})
	a("GET "+p+"/messages", func(w http.ResponseWriter, r *http.Request) (any, error) {
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		return orEmpty(m.ListMessages(r.Context(), MessageFilter{SellerID: q.Get("sellerId"), SubscriptionID: q.Get("subscriptionId"),
			OrderID: q.Get("orderId"), Activity: q.Get("activity"), State: q.Get("state"), Limit: limit}))
	})
	a("GET "+p+"/messages/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			return nil, badField("id", "is not a message number")
		}
		return m.GetMessage(r.Context(), id, true)
	})
	a("POST "+p+"/messages/{id}/restart", func(w http.ResponseWriter, r *http.Request) (any, error) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			return nil, badField("id", "is not a message number")
		}
		return m.Restart(r.Context(), id)
	})
	a("POST "+p+"/messages", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in struct {
			SellerID string          `json:"sellerId"`
			URL      string          `json:"url"`
			KeyType  string          `json:"keyType"`
			Body     json.RawMessage `json:"body"`
			Sync     bool            `json:"sync"`
		}
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		var head struct {
			Activity string `json:"activity"`
		}
		if err := json.Unmarshal(in.Body, &head); err != nil || head.Activity == "" {
			return nil, badField("body", "must be a JSON object with an activity")
		}
		if _, err := m.GetSeller(r.Context(), in.SellerID); err != nil {
			return nil, err
		}
		o := Outbound{SellerID: in.SellerID, Activity: head.Activity, URL: in.URL, KeyType: in.KeyType, Body: in.Body}
		if in.Sync {
			if err := checkAddressURL("url", in.URL); err != nil {
				return nil, err
			}
			return m.Call(r.Context(), o)
		}
		id, err := m.Send(r.Context(), o)
		if err != nil {
			return nil, err
		}
		return m.GetMessage(r.Context(), id, false)
	})
	a("GET "+p+"/clock", func(w http.ResponseWriter, r *http.Request) (any, error) {
		_, virtual := m.virtual()
		next, ok, err := m.runner.NextDue(r.Context())
		if err != nil {
			return nil, err
		}
		out := map[string]any{"now": m.clock.Now().UTC(), "virtual": virtual}
		if ok {
			out["nextDue"] = next
		}
		return out, nil
	})
	a("POST "+p+"/clock/advance", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var in struct {
			Duration string `json:"duration"`
		}
		if err := DecodeJSON(r, &in); err != nil {
			return nil, err
		}
		d, err := ParseDuration(in.Duration)
		if err != nil {
			return nil, badField("duration", "%v", err)
		}
		return m.Advance(r.Context(), d)
	})
	a("GET "+p+"/audit", func(w http.ResponseWriter, r *http.Request) (any, error) {
		q := r.URL.Query()
		f := AuditFilter{Kind: q.Get("kind"), Actor: q.Get("actor")}
		var err error
		if v := q.Get("limit"); v != "" {
			if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 0 {
				return nil, badField("limit", "must be a non-negative number")
			}
		}
		if v := q.Get("before"); v != "" {
			if f.BeforeID, err = strconv.ParseInt(v, 10, 64); err != nil || f.BeforeID < 0 {
				return nil, badField("before", "must be an audit record id")
			}
		}
		return m.ListAudit(r.Context(), f)
	})
	a("GET "+p+"/jobs", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return jobs.Counts(r.Context(), m.db)
	})
	return rt
}

// ParseDuration parses a Go duration, also accepting a day suffix ("30d").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n < 0 || n > 36500 {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 720h, 90m or 30d", s)
	}
	return d, nil
}

// Handle mounts an extra handler (seller tools, buyer center, …).
func (rt *Router) Handle(pattern string, h http.Handler) { rt.mux.Handle(pattern, h) }

// ServeHTTP serves a request.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.mux.ServeHTTP(w, r) }

// Admin wraps h with the admin-token check (Authorization: Bearer <token>).
func (rt *Router) Admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if rt.token == "" {
			writeJSON(w, http.StatusServiceUnavailable, &Error{Code: "unavailable", Msg: "no admin token is configured (SOUK_MARKET_ADMIN_TOKEN)"})
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(rt.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="souk market"`)
			writeJSON(w, http.StatusUnauthorized, &Error{Code: "unauthorized", Msg: "a valid admin token is required (Authorization: Bearer …)"})
			return
		}
		h(w, r)
	}
}

func orEmpty[T any](v []T, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	if v == nil {
		v = []T{}
	}
	return v, nil
}

// DecodeJSON reads an admin API request body as the market's handlers do
// (seller tools' too): strictly (an unknown field is an error), at most 1 MiB,
// an empty body as {}. Errors are *Error naming the field; one a custom
// UnmarshalJSON returns as an *Error is kept as it is.
func DecodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return badField("body", "unreadable: %v", err)
	}
	if len(body) > 1<<20 {
		return badField("body", "is larger than 1 MiB")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	d := json.NewDecoder(strings.NewReader(string(body)))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		var me *Error
		if errors.As(err, &me) {
			return err
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badField(te.Field, "must be a JSON %s", te.Type.String())
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return badField(strings.Trim(f, `"`), "is not a known field")
		}
		return badField("body", "is not valid JSON: %v", err)
	}
	return nil
}

func writeError(w http.ResponseWriter, r *http.Request, m *Market, err error) {
	var me *Error
	if errors.As(err, &me) {
		writeJSON(w, me.Status, me)
		return
	}
	m.log.ErrorContext(r.Context(), "market: api", "method", r.Method, "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, &Error{Code: "internal", Msg: "internal error; see the market's log"})
}
