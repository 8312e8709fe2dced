// Package marketcat connects the buyer center to the market: its Catalog
// resolves an instance to the purchased joint-operation app from the
// market's subscriptions, products, production addresses and seller kit
// keys, and the buyer center's app credentials. It lives apart from both
// packages so that neither imports the other.
package marketcat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/soukhq/souk/market"
	"github.com/soukhq/souk/market/buyer"
)

// Catalog implements buyer.Catalog on a *market.Market.
type Catalog struct {
	Market *market.Market
}

var _ buyer.Catalog = Catalog{}

// Subscription states whose app can be bound and synced.
var usable = map[string]bool{"ACTIVE": true, "FROZEN": true}

// App resolves instanceID: the subscription that created it must be active
// (or frozen), its product must have an app credential, and its seller a
// production address and a kit key.
func (c Catalog) App(ctx context.Context, instanceID string) (buyer.App, error) {
	if instanceID == "" {
		return buyer.App{}, buyer.ErrNoApp
	}
	var subID string
	err := c.Market.DB().QueryRow(ctx, `SELECT id FROM market_subscriptions WHERE instance_id = $1 ORDER BY created_at DESC LIMIT 1`, instanceID).Scan(&subID)
	if errors.Is(err, sql.ErrNoRows) {
		return buyer.App{}, fmt.Errorf("instance %s: %w", instanceID, buyer.ErrNoApp)
	}
	if err != nil {
		return buyer.App{}, fmt.Errorf("marketcat: subscription of %s: %w", instanceID, err)
	}
	sub, err := c.Market.GetSubscription(ctx, subID)
	if err != nil {
		return buyer.App{}, fmt.Errorf("marketcat: %w", err)
	}
	if !usable[sub.Status] {
		return buyer.App{}, fmt.Errorf("instance %s is %s: %w", instanceID, sub.Status, buyer.ErrNoApp)
	}
	cred, err := buyer.LookupAppCredential(ctx, c.Market.DB(), sub.ProductID)
	if buyer.IsNotFound(err) {
		return buyer.App{}, fmt.Errorf("product %s has no app credential (not a joint-operation product): %w", sub.ProductID, buyer.ErrNoApp)
	}
	if err != nil {
		return buyer.App{}, err
	}
	if cred.SellerID != sub.SellerID {
		return buyer.App{}, fmt.Errorf("the app credential of product %s belongs to another seller: %w", sub.ProductID, buyer.ErrNoApp)
	}
	prod, err := c.Market.GetProduct(ctx, sub.ProductID)
	if err != nil {
		return buyer.App{}, fmt.Errorf("marketcat: %w", err)
	}
	addr, err := c.Market.GetAddress(ctx, prod.AddressID)
	if err != nil {
		return buyer.App{}, fmt.Errorf("marketcat: %w", err)
	}
	key, err := c.Market.SellerKey(ctx, sub.SellerID, market.KeyKit)
	if err != nil {
		return buyer.App{}, fmt.Errorf("marketcat: seller %s has no kit key: %w", sub.SellerID, err)
	}
	return buyer.App{
		InstanceID: instanceID, OrderID: sub.OriginOrder, SellerID: sub.SellerID, CustomerID: sub.CustomerID, AppID: cred.AppID,
		Endpoint: addr.URL, KitKey: key, PublicKey: cred.PublicKey, RedirectURIs: cred.LoginURLs, TestFlag: sub.TestFlag,
	}, nil
}
