package market

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestProductGateHook(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		_, sub := e.buy(BuyInput{CustomerID: "cust-1", ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		var asked []string
		e.m.SetProductGate(func(_ context.Context, id string) error {
			asked = append(asked, id)
			return errors.New("suspended by the operator")
		})
		_, err := e.m.Buy(e.ctx, BuyInput{CustomerID: "cust-1", ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		var me *Error
		if !errors.As(err, &me) || me.Status != http.StatusUnprocessableEntity || me.Field != "productId" ||
			!strings.Contains(me.Msg, "product prod-1 cannot be bought: suspended by the operator") {
			t.Fatalf("gated buy: %v", err)
		}
		if len(asked) != 1 || asked[0] != "prod-1" {
			t.Errorf("gate asked %v", asked)
		}
		// Renewals of existing subscriptions are not gated.
		if _, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: sub.ID, PeriodNumber: 1}); err != nil {
			t.Errorf("renew: %v", err)
		}
		if cat, err := e.m.Catalog(e.ctx); err == nil {
			t.Errorf("catalog with a failing (non-refusal) gate: %v, want the error", cat)
		}
		e.m.SetProductGate(func(context.Context, string) error { return &Error{Status: 422, Code: "refused", Msg: "no"} })
		if cat, err := e.m.Catalog(e.ctx); err != nil || len(cat) != 0 {
			t.Errorf("catalog with a refusing gate: %v %v", cat, err)
		}
		e.m.SetProductGate(nil)
		if cat, err := e.m.Catalog(e.ctx); err != nil || len(cat) != 1 {
			t.Errorf("catalog without gate: %v %v", cat, err)
		}
		if _, err := e.m.Buy(e.ctx, BuyInput{CustomerID: "cust-1", ProductCode: "P-BASIC-MONTH", PeriodNumber: 1}); err != nil {
			t.Errorf("buy without gate: %v", err)
		}
	})
}
