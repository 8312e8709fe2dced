package sellertools

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/soukhq/souk/market"
)

// APIPrefix is where the seller tools' JSON API is mounted on the market's router.
const APIPrefix = market.APIPrefix + "/sellertools"

// Mount mounts the seller tools' JSON API on the market's router, every
// endpoint behind the admin token (Router.Admin):
//
//	GET    /api/v1/sellertools/interfaces                           the debugging tool's tabs and parameters
//	GET    /api/v1/sellertools/products/{id}/defaults/{activity}    preset parameters of a tab
//	POST   /api/v1/sellertools/debug/generate                       DebugInput → Command (signed URL, headers, body, curl)
//	POST   /api/v1/sellertools/debug/send                           DebugInput → Result
//	POST   /api/v1/sellertools/debug/save                           DebugInput → Result (+ savedCase when it passed)
//	GET    /api/v1/sellertools/cases?sellerId=&productId=&activity= saved cases
//	GET    /api/v1/sellertools/cases/{id}                           one case
//	DELETE /api/v1/sellertools/cases/{id}                           delete a case
//	GET    /api/v1/sellertools/products?sellerId=                   listings (sale status, failure streak)
//	GET    /api/v1/sellertools/products/{id}                        one listing
//	GET    /api/v1/sellertools/products/{id}/readiness              mandatory interfaces and their cases
//	GET    /api/v1/sellertools/products/{id}/purchasable            {purchasable, reason}: the core's check
//	POST   /api/v1/sellertools/products/{id}/on-sale                put on sale (needs readiness)
//	POST   /api/v1/sellertools/products/{id}/off-sale               take off sale {"note"}
//	POST   /api/v1/sellertools/products/{id}/unfreeze               dial-test now; back on sale if it passes
//	POST   /api/v1/sellertools/products/{id}/dialtests              dial-test now
//	GET    /api/v1/sellertools/products/{id}/history?days=          dial-test days (runs, failures, streak), newest first
//	GET    /api/v1/sellertools/dialtests?sellerId=&productId=&limit= run history, newest first
//	GET    /api/v1/sellertools/dialtests/{id}                       one run with its per-case results
//	GET    /api/v1/sellertools/dialtests/schedule                   time zone, slots, pending slot jobs
func (t *Tools) Mount(rt *market.Router) {
	h := func(pattern string, fn func(r *http.Request) (int, any, error)) {
		rt.Handle(pattern, rt.Admin(func(w http.ResponseWriter, r *http.Request) {
			status, v, err := fn(r)
			if err != nil {
				var me *market.Error
				if errors.As(err, &me) {
					writeJSON(w, me.Status, me)
					return
				}
				t.log.ErrorContext(r.Context(), "sellertools: api", "method", r.Method, "path", r.URL.Path, "err", err)
				writeJSON(w, http.StatusInternalServerError, &market.Error{Code: "internal", Msg: "internal error; see the market's log"})
				return
			}
			writeJSON(w, status, v)
		}))
	}
	ok := func(v any, err error) (int, any, error) { return http.StatusOK, v, err }
	p := APIPrefix
	h("GET "+p+"/interfaces", func(r *http.Request) (int, any, error) { return ok(Interfaces(), nil) })
	h("GET "+p+"/products/{id}/defaults/{activity}", func(r *http.Request) (int, any, error) {
		return ok(t.Defaults(r.Context(), r.PathValue("id"), r.PathValue("activity")))
	})
	debug := func(fn func(*http.Request, DebugInput) (any, error)) func(r *http.Request) (int, any, error) {
		return func(r *http.Request) (int, any, error) {
			var in DebugInput
			if err := market.DecodeJSON(r, &in); err != nil {
				return 0, nil, err
			}
			return ok(fn(r, in))
		}
	}
	h("POST "+p+"/debug/generate", debug(func(r *http.Request, in DebugInput) (any, error) { return t.Generate(r.Context(), in) }))
	h("POST "+p+"/debug/send", debug(func(r *http.Request, in DebugInput) (any, error) { return t.Send(r.Context(), in) }))
	h("POST "+p+"/debug/save", debug(func(r *http.Request, in DebugInput) (any, error) { return t.DebugAndSave(r.Context(), in) }))
	h("GET "+p+"/cases", func(r *http.Request) (int, any, error) {
		q := r.URL.Query()
		return ok(orEmpty(t.ListCases(r.Context(), CaseFilter{SellerID: q.Get("sellerId"), ProductID: q.Get("productId"), Activity: q.Get("activity")})))
	})
	h("GET "+p+"/cases/{id}", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		return ok(t.GetCase(r.Context(), id))
	})
	h("DELETE "+p+"/cases/{id}", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		return ok(t.DeleteCase(r.Context(), id))
	})
	h("GET "+p+"/products", func(r *http.Request) (int, any, error) {
		return ok(orEmpty(t.ListListings(r.Context(), r.URL.Query().Get("sellerId"))))
	})
	h("GET "+p+"/products/{id}", func(r *http.Request) (int, any, error) { return ok(t.Status(r.Context(), r.PathValue("id"))) })
	h("GET "+p+"/products/{id}/readiness", func(r *http.Request) (int, any, error) {
		return ok(t.Readiness(r.Context(), r.PathValue("id")))
	})
	h("GET "+p+"/products/{id}/purchasable", func(r *http.Request) (int, any, error) {
		err := t.CheckPurchasable(r.Context(), r.PathValue("id"))
		var me *market.Error
		if err != nil && errors.As(err, &me) && me.Code == "refused" {
			return ok(map[string]any{"purchasable": false, "reason": me.Msg}, nil)
		}
		if err != nil {
			return 0, nil, err
		}
		return ok(map[string]any{"purchasable": true}, nil)
	})
	h("POST "+p+"/products/{id}/on-sale", func(r *http.Request) (int, any, error) {
		return ok(t.PutOnSale(r.Context(), r.PathValue("id")))
	})
	h("POST "+p+"/products/{id}/off-sale", func(r *http.Request) (int, any, error) {
		var in struct {
			Note string `json:"note"`
		}
		if err := market.DecodeJSON(r, &in); err != nil {
			return 0, nil, err
		}
		return ok(t.TakeOffSale(r.Context(), r.PathValue("id"), in.Note))
	})
	h("POST "+p+"/products/{id}/unfreeze", func(r *http.Request) (int, any, error) {
		run, l, err := t.Unfreeze(r.Context(), r.PathValue("id"))
		return ok(map[string]any{"run": run, "listing": l}, err)
	})
	h("POST "+p+"/products/{id}/dialtests", func(r *http.Request) (int, any, error) {
		run, err := t.RunNow(r.Context(), r.PathValue("id"))
		return http.StatusCreated, run, err
	})
	h("GET "+p+"/dialtests", func(r *http.Request) (int, any, error) {
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		return ok(orEmpty(t.ListRuns(r.Context(), RunFilter{SellerID: q.Get("sellerId"), ProductID: q.Get("productId"), Limit: limit})))
	})
	h("GET "+p+"/products/{id}/history", func(r *http.Request) (int, any, error) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("days"))
		return ok(orEmpty(t.History(r.Context(), r.PathValue("id"), limit)))
	})
	h("GET "+p+"/dialtests/schedule", func(r *http.Request) (int, any, error) { return ok(t.Schedule(r.Context())) })
	h("GET "+p+"/dialtests/{id}", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		return ok(t.GetRun(r.Context(), id))
	})
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, badField("id", "is not a number")
	}
	return id, nil
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
