package market

// The product gate: a hook that lets another component (the seller tools'
// listing status) refuse new purchases of a product and hide it from the
// buyer catalog, without the core importing that component.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// ProductGate decides whether a product may be bought now: nil when it may,
// an error saying why not otherwise (a *Error is passed through to the API
// unchanged; any other error is wrapped as a refusal naming the product).
type ProductGate func(ctx context.Context, productID string) error

// SetProductGate installs (or, with nil, removes) the product gate after New,
// for wiring where the gate's component needs the Market first. Call it at
// wiring time, before the market serves requests.
func (m *Market) SetProductGate(g ProductGate) { m.gate = g }

// checkGate applies the product gate to a new purchase. Renewals, upgrades,
// conversions of a trial and unsubscriptions of existing subscriptions are
// not gated (docs/market.md "Product gate").
func (m *Market) checkGate(ctx context.Context, productID string) error {
	if m.gate == nil {
		return nil
	}
	err := m.gate(ctx, productID)
	if err == nil {
		return nil
	}
	var me *Error
	if errors.As(err, &me) {
		if me.Field == "" {
			c := *me
			c.Field = "productId"
			return &c
		}
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("market: product gate of %s: %w", productID, err)
	}
	return &Error{Status: http.StatusUnprocessableEntity, Code: "refused", Field: "productId",
		Msg: fmt.Sprintf("product %s cannot be bought: %v", productID, err)}
}

// Catalog lists the products a buyer can buy now: every product the product
// gate lets through (all of them without a gate). ListProducts is the
// seller's and admin's view and lists every product.
func (m *Market) Catalog(ctx context.Context) ([]Product, error) {
	all, err := m.ListProducts(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]Product, 0, len(all))
	for _, p := range all {
		if m.gate != nil {
			if err := m.gate(ctx, p.ID); err != nil {
				var me *Error
				if !errors.As(err, &me) {
					return nil, fmt.Errorf("market: catalog: product gate of %s: %w", p.ID, err)
				}
				continue
			}
		}
		out = append(out, p)
	}
	return out, nil
}
