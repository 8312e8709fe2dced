// Package marketsrv wires a whole market process: the core market's router,
// the buyer center (joint operation) with its catalog on the market, the
// identity provider, the seller tools and the product gate they provide.
// `souk market serve` and `souk demo` use it; tests use it to get the same
// server the binary runs.
package marketsrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/soukhq/souk/market"
	"github.com/soukhq/souk/market/buyer"
	"github.com/soukhq/souk/market/buyer/marketcat"
	"github.com/soukhq/souk/market/idp"
	"github.com/soukhq/souk/market/sellertools"
)

// Options configures Install.
type Options struct {
	// AdminToken protects /api/v1 (the market's admin API, the buyer center,
	// the seller's joint-operation API, the seller tools).
	AdminToken string
	// PublicURL is the URL merchants and browsers reach the market at
	// (scheme + host [+ port]); it is sent as tenantSync domainName, and
	// merchants call {PublicURL}/api/v1/oauth2/… on it. Required.
	PublicURL string
	Logger    *slog.Logger
	// SellerTools configures dial tests (time zone, slot times).
	SellerTools sellertools.Options
	// Password are the argon2id parameters of member passwords (zero → idp defaults).
	Password idp.PasswordParams
	// PurgeEvery is how often expired IdP sessions, codes and tokens are
	// deleted (real time; default 10 min); PurgeKeep how long expired rows
	// are kept for inspection (default 24 h).
	PurgeEvery, PurgeKeep time.Duration
}

// Server is a wired market process.
type Server struct {
	Market *market.Market
	Router *market.Router
	Center *buyer.Center
	IdP    *idp.IdP
	Tools  *sellertools.Tools

	handler    http.Handler
	log        *slog.Logger
	purgeEvery time.Duration
	purgeKeep  time.Duration
}

// CheckPublicURL validates a public URL: absolute http(s), no path beyond "/",
// no query or fragment. It returns the URL without a trailing slash.
func CheckPublicURL(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("public URL %q must be an absolute http:// or https:// URL", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("public URL %q must be scheme://host[:port] only", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// Install wires the components on m: it migrates the buyer center, the IdP
// and the seller tools (after m.Migrate), registers the dial-test jobs on the
// market's runner, installs the seller tools' CheckPurchasable as the
// market's product gate, and mounts
//
//	/api/v1/buyer/     the buyer center (admin token)
//	/api/v1/joint/     the seller's joint-operation API (admin token)
//	/api/v1/sellertools/ the seller tools (admin token)
//	/api/v1/oauth2/, /api/v1/logout, /unified-login/  the IdP (public)
//
// Call it before m.Run, then Start.
func Install(ctx context.Context, m *market.Market, opts Options) (*Server, error) {
	pub, err := CheckPublicURL(opts.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("marketsrv: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := m.DB()
	if err := buyer.Migrate(ctx, d); err != nil {
		return nil, fmt.Errorf("marketsrv: %w", err)
	}
	if err := idp.Migrate(ctx, d); err != nil {
		return nil, fmt.Errorf("marketsrv: %w", err)
	}
	center, err := buyer.New(buyer.Config{DB: d, Clock: m.Clock(), WireClock: m.WireClock(), Catalog: marketcat.Catalog{Market: m},
		Logger: log.With("component", "buyer"), DomainName: pub, Password: opts.Password})
	if err != nil {
		return nil, fmt.Errorf("marketsrv: %w", err)
	}
	idpSrv, err := idp.New(idp.Config{DB: d, Clock: m.Clock(), Logger: log.With("component", "idp"), Directory: center.Directory(), Note: market.NoteAudit,
		Password: opts.Password, SecureCookies: strings.HasPrefix(pub, "https://")})
	if err != nil {
		return nil, fmt.Errorf("marketsrv: %w", err)
	}
	rt := m.Handler(opts.AdminToken)
	tools, err := sellertools.Install(ctx, m, rt, log.With("component", "sellertools"), opts.SellerTools)
	if err != nil {
		return nil, fmt.Errorf("marketsrv: %w", err)
	}
	m.SetProductGate(tools.CheckPurchasable)
	rt.Handle("/api/v1/buyer/", rt.Admin(http.StripPrefix("/api/v1/buyer", center.Handler()).ServeHTTP))
	rt.Handle("/api/v1/joint/", rt.Admin(http.StripPrefix("/api/v1/joint", center.SellerHandler()).ServeHTTP))
	h := idpSrv.Handler()
	rt.Handle("/api/v1/oauth2/", h)
	rt.Handle("/api/v1/logout", h)
	rt.Handle("/unified-login/", h)
	s := &Server{Market: m, Router: rt, Center: center, IdP: idpSrv, Tools: tools, log: log,
		purgeEvery: opts.PurgeEvery, purgeKeep: opts.PurgeKeep}
	s.handler = m.Audit(rt, market.AuditOptions{AdminToken: opts.AdminToken, IdP: []string{"/api/v1/oauth2/", idp.PathLogout, idp.PathUnified}})
	if s.purgeEvery <= 0 {
		s.purgeEvery = 10 * time.Minute
	}
	if s.purgeKeep <= 0 {
		s.purgeKeep = 24 * time.Hour
	}
	return s, nil
}

// Start sends the kit calls left pending by a previous process
// (Center.DeliverPending) and purges expired IdP rows every PurgeEvery, in
// the background until ctx is done.
func (s *Server) Start(ctx context.Context) {
	go func() {
		n, err := s.Center.DeliverPending(ctx)
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			s.log.Error("souk market: pending kit calls", "err", err)
		case n > 0:
			s.log.Info("souk market: sent pending kit calls", "count", n)
		}
	}()
	go func() {
		t := time.NewTicker(s.purgeEvery)
		defer t.Stop()
		for {
			if n, err := s.IdP.Purge(ctx, s.purgeKeep); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Error("souk market: idp purge", "err", err)
			} else if n > 0 {
				s.log.Debug("souk market: idp purge", "removed", n)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Handler is the HTTP handler of the process: the router behind the audit
// log (market.Audit; every admin API call and open-API call is recorded,
// the IdP's public endpoints are not).
func (s *Server) Handler() http.Handler { return s.handler }
