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

var (
	_ buyer.Catalog        = Catalog{}
	_ buyer.ProductCatalog = Catalog{}
)

// Product resolves a product for the seller's debugging calls: its
// production address, the seller's kit key and its app credential.
func (c Catalog) Product(ctx context.Context, productID string) (buyer.App, error) {
	prod, err := c.Market.GetProduct(ctx, productID)
	if err != nil {
		if market.IsNotFound(err) {
			return buyer.App{}, fmt.Errorf("product %s: %w", productID, buyer.ErrNoApp)
		}
		return buyer.App{}, fmt.Errorf("marketcat: %w", err)
	}
	cred, err := buyer.LookupAppCredential(ctx, c.Market.DB(), productID)
	if buyer.IsNotFound(err) {
		return buyer.App{}, fmt.Errorf("product %s has no app credential: %w", productID, buyer.ErrNoApp)
	}
	if err != nil {
		return buyer.App{}, err
	}
	if cred.SellerID != prod.SellerID {
		return buyer.App{}, fmt.Errorf("the app credential of product %s belongs to another seller: %w", productID, buyer.ErrNoApp)
	}
	return c.resolve(ctx, prod, cred, buyer.App{SellerID: prod.SellerID, TestFlag: true})
}

// resolve fills in the production address, kit key and credential.
func (c Catalog) resolve(ctx context.Context, prod market.Product, cred buyer.AppCredential, app buyer.App) (buyer.App, error) {
	addr, err := c.Market.GetAddress(ctx, prod.AddressID)
	if err != nil {
		return buyer.App{}, fmt.Errorf("marketcat: %w", err)
	}
	key, err := c.Market.SellerKey(ctx, prod.SellerID, market.KeyKit)
	if err != nil {
		return buyer.App{}, fmt.Errorf("marketcat: seller %s has no kit key: %w", prod.SellerID, err)
	}
	app.AppID, app.Endpoint, app.KitKey, app.PublicKey, app.RedirectURIs = cred.AppID, addr.URL, key, cred.PublicKey, cred.LoginURLs
	return app, nil
}

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
	return c.resolve(ctx, prod, cred, buyer.App{
		InstanceID: instanceID, OrderID: sub.OriginOrder, SellerID: sub.SellerID, CustomerID: sub.CustomerID, TestFlag: sub.TestFlag,
	})
}
