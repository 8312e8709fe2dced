package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/market"
	"github.com/soukhq/souk/market/buyer"
	"github.com/soukhq/souk/market/marketsrv"
	"github.com/soukhq/souk/market/sellertools"
)

// runMarket is `souk market …`: `serve` runs a marketplace; every other
// subcommand talks to a running one over its JSON API with the admin token.
func runMarket(ctx context.Context, a *App, args []string) int {
	if len(args) > 0 && args[0] == "serve" {
		return marketServe(ctx, a, args[1:])
	}
	return marketClient(ctx, a, args)
}

func marketServe(ctx context.Context, a *App, args []string) int {
	s := a.NewSettings("market serve")
	var addr, dsn, token, virtual, level, format, publicURL, dialTimes, tz string
	var retention time.Duration
	var workers int
	s.String(&addr, "market-addr", "127.0.0.1:8090", "listen address of the market (open APIs and /api/v1)")
	s.DSN(&dsn, "market-db", "souk-market.db", "database: a SQLite file path or a postgres:// DSN (printed with its password masked)")
	s.Secret(&token, "market-admin-token", "bearer token of the admin API /api/v1 (required)")
	s.String(&virtual, "virtual-clock", "", `run on a virtual clock starting at this RFC 3339 time ("now" = the current time); empty = real time`)
	s.Duration(&retention, "retention", market.DefaultRetention, "retention (freeze) period between expiry and release")
	s.Int(&workers, "market-workers", 8, "concurrent job workers (dispatch attempts and lifecycle timers)")
	s.String(&publicURL, "public-url", "", "URL merchants and browsers reach the market at, sent as tenantSync domainName (default http://<market-addr>)")
	s.String(&dialTimes, "dial-times", strings.Join(sellertools.DefaultDialTimes, ","), "dial-test slots of a day, HH:MM,HH:MM in --time-zone")
	s.String(&tz, "time-zone", "UTC+8", `the market's time zone for dial tests: an IANA name ("Asia/Shanghai") or UTC±H`)
	s.String(&level, "log-level", "info", "log level: debug, info, warn, error")
	s.String(&format, "log-format", "json", "log format: json or text")
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(a.Stderr, "souk market serve:", err)
		return 2
	}
	log, err := a.Logger(level, format)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk market serve:", err)
		return 2
	}
	if token == "" {
		fmt.Fprintln(a.Stderr, "souk market serve: an admin token is required (--market-admin-token or SOUK_MARKET_ADMIN_TOKEN[_FILE])")
		return 2
	}
	if publicURL == "" {
		publicURL = "http://" + addr
	}
	if publicURL, err = marketsrv.CheckPublicURL(publicURL); err != nil {
		fmt.Fprintln(a.Stderr, "souk market serve: --public-url:", err)
		return 2
	}
	loc, err := parseZone(tz)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk market serve: --time-zone:", err)
		return 2
	}
	fmt.Fprintln(a.Stderr, "souk market serve: configuration")
	s.Print(a.Stderr)
	var clk clock.Clock = clock.Real{}
	if virtual != "" {
		start := time.Now().UTC()
		if virtual != "now" {
			if start, err = time.Parse(time.RFC3339, virtual); err != nil {
				fmt.Fprintf(a.Stderr, "souk market serve: --virtual-clock: %q is not an RFC 3339 time or \"now\"\n", virtual)
				return 2
			}
		}
		clk = clock.NewVirtual(start)
	}
	d, err := db.Open(ctx, dsn)
	if err != nil {
		fmt.Fprintf(a.Stderr, "souk market serve: open %s: %v\n", db.Redact(dsn), err)
		return 1
	}
	defer d.Close()
	m, err := market.New(market.Config{DB: d, Clock: clk, Logger: log, Retention: retention, Workers: workers})
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk market serve:", err)
		return 1
	}
	if err := m.Migrate(ctx); err != nil {
		fmt.Fprintln(a.Stderr, "souk market serve:", err)
		return 1
	}
	if err := m.LoadClock(ctx); err != nil {
		fmt.Fprintln(a.Stderr, "souk market serve:", err)
		if errors.Is(err, market.ErrVirtualDatabase) {
			return 2
		}
		return 1
	}
	app, err := marketsrv.Install(ctx, m, marketsrv.Options{AdminToken: token, PublicURL: publicURL, Logger: log,
		SellerTools: sellertools.Options{Location: loc, DialTimes: splitList(dialTimes)}})
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk market serve:", err)
		return 1
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk market serve:", err)
		return 1
	}
	srv := &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 5 * time.Minute}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 3)
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(ctx) }()
	app.Start(ctx)
	var follow sync.WaitGroup
	follow.Go(func() { m.FollowClock(ctx, time.Second) })
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			done <- err
		}
	}()
	announce(ctx, log, "souk market: listening", "addr", ln.Addr().String(), "public_url", publicURL, "db", db.Redact(dsn), "virtual_clock", virtual != "", "now", clk.Now())
	runExited := false
	select {
	case <-ctx.Done():
	case err := <-done:
		if err != nil {
			log.Error("souk market: stopped", "err", err)
		}
	case err := <-runDone:
		runExited = true
		if err != nil {
			log.Error("souk market: job runner stopped", "err", err)
		}
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	// The database closes (deferred) only after the job runner has returned:
	// an interrupted call gives its job back and a received answer is
	// recorded, instead of the job staying leased and the call being re-sent
	// when the lease ends.
	if !runExited {
		select {
		case <-runDone:
		case <-sctx.Done():
			log.Error("souk market: the job runner did not stop within 10 s; closing the database anyway")
		}
	}
	follow.Wait()
	return 0
}

// parseZone reads an IANA time zone name or a fixed offset "UTC+8", "UTC-5:30".
func parseZone(s string) (*time.Location, error) {
	if rest, ok := strings.CutPrefix(strings.ToUpper(s), "UTC"); ok && rest != "" {
		sign := 1
		switch rest[0] {
		case '+':
		case '-':
			sign = -1
		default:
			return nil, fmt.Errorf("%q is not UTC±H[:MM]", s)
		}
		h, mm, _ := strings.Cut(rest[1:], ":")
		hh, err1 := strconv.Atoi(h)
		mi := 0
		var err2 error
		if mm != "" {
			mi, err2 = strconv.Atoi(mm)
		}
		if err1 != nil || err2 != nil || hh > 14 || mi > 59 || mi < 0 || hh < 0 {
			return nil, fmt.Errorf("%q is not UTC±H[:MM]", s)
		}
		return time.FixedZone(s, sign*(hh*3600+mi*60)), nil
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q: %w", s, err)
	}
	return loc, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// clientCmd is one `souk market <cmd>` that calls the admin API.
type clientCmd struct {
	usage string
	args  int // positional arguments required
	build func(fs *flag.FlagSet) func(pos []string) (method, path string, body any, err error)
}

func str(fs *flag.FlagSet, name, usage string) *string { return fs.String(name, "", usage) }

func marketCommands() map[string]clientCmd {
	cmds := coreCommands()
	for k, v := range buyerCommands() {
		cmds[k] = v
	}
	return cmds
}

// buyerCommands are the buyer center's commands (joint operation, /api/v1/buyer)
// and the seller's app credential (/api/v1/joint).
func buyerCommands() map[string]clientCmd {
	ent := func(pos []string) string { return "/buyer/enterprises/" + url.PathEscape(pos[0]) }
	return map[string]clientCmd{
		"catalog": {"(products a buyer can buy now: not frozen, not off sale)", 0, get("/catalog")},
		"enterprise-create": {"--name N [--customer C --code TENANTCODE]", 0, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			name, cust, code := str(fs, "name", "enterprise name"), str(fs, "customer", "customer id that owns it"), str(fs, "code", "tenantCode (generated when empty)")
			return func([]string) (string, string, any, error) {
				return "POST", "/buyer/enterprises", buyer.EnterpriseInput{Name: *name, CustomerID: *cust, Code: *code}, nil
			}
		}},
		"enterprises": {"[--customer C]", 0, query("/buyer/enterprises", "customer", "customerId")},
		"departments": {"ENTERPRISE", 1, getf("/buyer/enterprises/%s/departments")},
		"department-create": {"ENTERPRISE --name N [--parent CODE --code CODE]", 1, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			name, parent, code := str(fs, "name", "department name"), str(fs, "parent", "parent orgCode (empty = top level)"), str(fs, "code", "orgCode (generated when empty)")
			return func(pos []string) (string, string, any, error) {
				return "POST", ent(pos) + "/departments", buyer.DepartmentInput{OrgName: *name, ParentCode: *parent, OrgCode: *code}, nil
			}
		}},
		"members": {"ENTERPRISE", 1, getf("/buyer/enterprises/%s/members")},
		"member-create": {"ENTERPRISE --user U --name N [--dept CODE --role user|admin --email E --mobile M --password-file F]", 1,
			func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
				user, name, dept, role := str(fs, "user", "userName (sign-in name)"), str(fs, "name", "display name"), str(fs, "dept", "orgCode"), str(fs, "role", "user or admin")
				email, mobile, pwFile := str(fs, "email", "e-mail"), str(fs, "mobile", "mobile phone"), str(fs, "password-file", "file holding the sign-in password ('-' = stdin; empty = cannot sign in yet)")
				return func(pos []string) (string, string, any, error) {
					in := buyer.MemberInput{UserName: *user, Name: *name, OrgCode: *dept, Role: *role, Email: *email, Mobile: *mobile}
					if *pwFile != "" {
						b, err := readFileOrStdin(*pwFile)
						if err != nil {
							return "", "", nil, err
						}
						in.Password = strings.TrimRight(string(b), "\r\n")
					}
					return "POST", ent(pos) + "/members", map[string]any{"members": []buyer.MemberInput{in}}, nil
				}
			}},
		"apps": {"ENTERPRISE (bound joint-operation apps)", 1, getf("/buyer/enterprises/%s/apps")},
		"app-bind": {"ENTERPRISE --instance INSTANCE", 1, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			inst := str(fs, "instance", "instanceId of a purchased joint-operation app")
			return func(pos []string) (string, string, any, error) {
				return "POST", ent(pos) + "/apps", map[string]string{"instanceId": *inst}, nil
			}
		}},
		"authorize":   {"ENTERPRISE BINDING [--members ID,ID] [--departments CODE,CODE]", 2, grants("")},
		"deauthorize": {"ENTERPRISE BINDING [--members ID,ID] [--departments CODE,CODE]", 2, grants("/cancel")},
		"kit-messages": {"ENTERPRISE [--state S --interface I --binding B --limit N]", 1, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			keys := map[string]string{"state": "state", "interface": "interface", "binding": "bindingId", "limit": "limit"}
			vals := map[string]*string{}
			for k := range keys {
				vals[k] = str(fs, k, "filter on "+keys[k])
			}
			return func(pos []string) (string, string, any, error) {
				q := url.Values{}
				for k, v := range vals {
					if *v != "" {
						q.Set(keys[k], *v)
					}
				}
				return "GET", ent(pos) + "/messages?" + q.Encode(), nil, nil
			}
		}},
		"kit-retry": {"ENTERPRISE ID (send a failed kit call again)", 2, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			return func(pos []string) (string, string, any, error) {
				return "POST", ent(pos) + "/messages/" + url.PathEscape(pos[1]) + "/retry", nil, nil
			}
		}},
		"app-credential-set": {"--seller S --product P --public-key-file F --login-url U[,U]", 0, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			seller, prod, keyFile, login := str(fs, "seller", "seller id"), str(fs, "product", "product id"), str(fs, "public-key-file", "RSA ≥ 3072-bit public key (PEM or Base64 DER)"), str(fs, "login-url", "the app's login addresses")
			return func([]string) (string, string, any, error) {
				b, err := readFileOrStdin(*keyFile)
				if err != nil {
					return "", "", nil, fmt.Errorf("--public-key-file: %w", err)
				}
				return "PUT", "/joint/sellers/" + url.PathEscape(*seller) + "/products/" + url.PathEscape(*prod) + "/app-credential",
					map[string]any{"publicKey": strings.TrimSpace(string(b)), "loginUrls": splitList(*login)}, nil
			}
		}},
	}
}

func grants(suffix string) func(*flag.FlagSet) func([]string) (string, string, any, error) {
	return func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
		members, depts := str(fs, "members", "member ids, comma-separated"), str(fs, "departments", "department orgCodes, comma-separated")
		return func(pos []string) (string, string, any, error) {
			return "POST", "/buyer/enterprises/" + url.PathEscape(pos[0]) + "/apps/" + url.PathEscape(pos[1]) + "/grants" + suffix,
				buyer.Subjects{Members: splitList(*members), Departments: splitList(*depts)}, nil
		}
	}
}

func coreCommands() map[string]clientCmd {
	return map[string]clientCmd{
		"seller-create": {"--name N [--id ID]", 0, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			name, id := str(fs, "name", "seller name"), str(fs, "id", "seller id (generated when empty)")
			return func([]string) (string, string, any, error) {
				return "POST", "/sellers", map[string]string{"name": *name, "id": *id}, nil
			}
		}},
		"sellers": {"", 0, get("/sellers")},
		"address-add": {"--seller S --url URL", 0, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			seller, u := str(fs, "seller", "seller id"), str(fs, "url", "production address")
			return func([]string) (string, string, any, error) {
				return "POST", "/sellers/" + url.PathEscape(*seller) + "/addresses", map[string]string{"url": *u}, nil
			}
		}},
		"addresses":      {"SELLER", 1, getf("/sellers/%s/addresses")},
		"address-verify": {"ADDRESS", 1, postf("/addresses/%s/verify")},
		"key-set": {"--seller S --type basic|kit|license|general [--secret K]", 0, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			seller, typ, secret := str(fs, "seller", "seller id"), str(fs, "type", "interface type"), str(fs, "secret", "key value (generated when empty)")
			return func([]string) (string, string, any, error) {
				return "PUT", "/sellers/" + url.PathEscape(*seller) + "/keys/" + url.PathEscape(*typ), map[string]string{"secret": *secret}, nil
			}
		}},
		"keys": {"SELLER", 1, getf("/sellers/%s/keys")},
		"credential-create": {"--seller S [--ak AK --sk SK]", 0, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			seller, ak, sk := str(fs, "seller", "seller id"), str(fs, "ak", "access key id"), str(fs, "sk", "secret key")
			return func([]string) (string, string, any, error) {
				return "POST", "/sellers/" + url.PathEscape(*seller) + "/credentials", map[string]string{"ak": *ak, "sk": *sk}, nil
			}
		}},
		"product-create": {"--file product.json (a ProductInput; '-' = stdin)", 0, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			file := str(fs, "file", "JSON file")
			return func([]string) (string, string, any, error) {
				b, err := readFileOrStdin(*file)
				return "POST", "/products", json.RawMessage(b), err
			}
		}},
		"products": {"", 0, get("/products")},
		"product":  {"PRODUCT", 1, getf("/products/%s")},
		"customer-create": {"--name N [--id ID --email E --mobile M]", 0, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			name, id, email, mobile := str(fs, "name", "customer name"), str(fs, "id", "customer id"), str(fs, "email", "e-mail"), str(fs, "mobile", "mobile phone")
			return func([]string) (string, string, any, error) {
				return "POST", "/customers", map[string]string{"name": *name, "id": *id, "email": *email, "mobilePhone": *mobile}, nil
			}
		}},
		"customers": {"", 0, get("/customers")},
		"buy": {"--customer C --product PRODUCTID [--periods N --linear N --trial --test]", 0, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			cust, prod := str(fs, "customer", "customer id"), str(fs, "product", "the plan's productId")
			periods, linear := fs.Int("periods", 0, "number of periods (PERIOD, ON_DEMAND_PKG)"), fs.Int64("linear", 0, "linear value (quantity)")
			trial, test := fs.Bool("trial", false, "start a trial"), fs.Bool("test", false, "testFlag 1 (sandbox)")
			return func([]string) (string, string, any, error) {
				return "POST", "/orders", market.BuyInput{CustomerID: *cust, ProductCode: *prod, PeriodNumber: *periods, LinearValue: *linear,
					Trial: *trial, TestFlag: *test}, nil
			}
		}},
		"renew": {"SUBSCRIPTION --periods N [--product P --linear N]", 1, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			periods, prod, linear := fs.Int("periods", 1, "periods to add"), str(fs, "product", "new plan productId"), fs.Int64("linear", -1, "new linear value")
			return func(pos []string) (string, string, any, error) {
				in := market.RenewInput{PeriodNumber: *periods, ProductCode: *prod}
				if *linear >= 0 {
					in.LinearValue = linear
				}
				return "POST", "/subscriptions/" + url.PathEscape(pos[0]) + "/renew", in, nil
			}
		}},
		"convert": {"SUBSCRIPTION --product P --periods N [--linear N]", 1, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			periods, prod, linear := fs.Int("periods", 1, "periods"), str(fs, "product", "paid plan productId"), fs.Int64("linear", 0, "linear value")
			return func(pos []string) (string, string, any, error) {
				return "POST", "/subscriptions/" + url.PathEscape(pos[0]) + "/convert", market.ConvertInput{ProductCode: *prod, PeriodNumber: *periods, LinearValue: *linear}, nil
			}
		}},
		"upgrade": {"SUBSCRIPTION [--product P] [--linear N]", 1, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			prod, linear := str(fs, "product", "new plan productId"), fs.Int64("linear", -1, "new linear value")
			return func(pos []string) (string, string, any, error) {
				in := market.UpgradeInput{ProductCode: *prod}
				if *linear >= 0 {
					in.LinearValue = linear
				}
				return "POST", "/subscriptions/" + url.PathEscape(pos[0]) + "/upgrade", in, nil
			}
		}},
		"unsubscribe": {"SUBSCRIPTION [--refund-cents N] [--reason R]", 1, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			refund, reason := fs.Int64("refund-cents", -1, "negotiated refund (outside the 5-day window)"), str(fs, "reason", "reason")
			return func(pos []string) (string, string, any, error) {
				in := market.UnsubscribeInput{Reason: *reason}
				if *refund >= 0 {
					in.RefundCents = refund
				}
				return "POST", "/subscriptions/" + url.PathEscape(pos[0]) + "/unsubscribe", in, nil
			}
		}},
		"cancel-renewal": {"SUBSCRIPTION (unsubscribe the last renewal period before it begins)", 1, postf("/subscriptions/%s/cancel-renewal")},
		"freeze":         {"SUBSCRIPTION", 1, postf("/subscriptions/%s/freeze")},
		"unfreeze":       {"SUBSCRIPTION", 1, postf("/subscriptions/%s/unfreeze")},
		"subscriptions":  {"[--customer C]", 0, query("/subscriptions", "customer", "customerId")},
		"subscription":   {"SUBSCRIPTION", 1, getf("/subscriptions/%s")},
		"resources":      {"CUSTOMER (calls queryInstance live)", 1, getf("/customers/%s/resources")},
		"bill":           {"CUSTOMER", 1, getf("/customers/%s/bill")},
		"orders":         {"[--customer C]", 0, query("/orders", "customer", "customerId")},
		"order":          {"ORDER", 1, getf("/orders/%s")},
		"messages": {"[--seller S --state queued|pending|succeeded|failed --activity A --subscription ID --order ID --limit N]", 0,
			filters("/messages", map[string]string{"seller": "sellerId", "state": "state", "activity": "activity", "subscription": "subscriptionId",
				"order": "orderId", "limit": "limit"})},
		"message": {"ID (with every attempt)", 1, getf("/messages/%s")},
		"restart": {"ID (restart a failed message once)", 1, postf("/messages/%s/restart")},
		"send": {"--seller S --url URL --body JSON [--key-type T] [--sync]", 0, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			seller, u, body, kt := str(fs, "seller", "seller id"), str(fs, "url", "address"), str(fs, "body", "JSON body with activity"), str(fs, "key-type", "key type (default basic)")
			sync := fs.Bool("sync", false, "call once now and print the answer")
			return func([]string) (string, string, any, error) {
				return "POST", "/messages", map[string]any{"sellerId": *seller, "url": *u, "keyType": *kt, "body": json.RawMessage(*body), "sync": *sync}, nil
			}
		}},
		"clock": {"[advance DURATION]  (e.g. 720h, 30d)", 0, func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			return func(pos []string) (string, string, any, error) {
				switch {
				case len(pos) == 0:
					return "GET", "/clock", nil, nil
				case len(pos) == 2 && pos[0] == "advance":
					return "POST", "/clock/advance", map[string]string{"duration": pos[1]}, nil
				}
				return "", "", nil, errors.New("usage: souk market clock [advance DURATION]")
			}
		}},
		"jobs": {"(job counts by state)", 0, get("/jobs")},
		"audit": {"[--limit N --kind admin|openapi|idp --actor A --before ID]  (audit log, newest first)", 0,
			filters("/audit", map[string]string{"limit": "limit", "kind": "kind", "actor": "actor", "before": "before"})},
	}
}

func get(path string) func(*flag.FlagSet) func([]string) (string, string, any, error) {
	return func(*flag.FlagSet) func([]string) (string, string, any, error) {
		return func([]string) (string, string, any, error) { return "GET", path, nil, nil }
	}
}

func getf(path string) func(*flag.FlagSet) func([]string) (string, string, any, error) {
	return func(*flag.FlagSet) func([]string) (string, string, any, error) {
		return func(pos []string) (string, string, any, error) {
			return "GET", fmt.Sprintf(path, url.PathEscape(pos[0])), nil, nil
		}
	}
}

func postf(path string) func(*flag.FlagSet) func([]string) (string, string, any, error) {
	return func(*flag.FlagSet) func([]string) (string, string, any, error) {
		return func(pos []string) (string, string, any, error) {
			return "POST", fmt.Sprintf(path, url.PathEscape(pos[0])), nil, nil
		}
	}
}

func query(path, flagName, param string) func(*flag.FlagSet) func([]string) (string, string, any, error) {
	return func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
		v := str(fs, flagName, "filter on "+param)
		return func([]string) (string, string, any, error) {
			if *v == "" {
				return "GET", path, nil, nil
			}
			return "GET", path + "?" + param + "=" + url.QueryEscape(*v), nil, nil
		}
	}
}

// filters reads a string flag per key of params, each sent (when set) as the
// query parameter params names: GET path?….
func filters(path string, params map[string]string) func(*flag.FlagSet) func([]string) (string, string, any, error) {
	return func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
		vals := map[string]*string{}
		for k, param := range params {
			vals[k] = str(fs, k, "filter on "+param)
		}
		return func([]string) (string, string, any, error) {
			q := url.Values{}
			for k, v := range vals {
				if *v != "" {
					q.Set(params[k], *v)
				}
			}
			return "GET", path + "?" + q.Encode(), nil, nil
		}
	}
}

func readFileOrStdin(name string) ([]byte, error) {
	switch name {
	case "":
		return nil, errors.New("--file is required")
	case "-":
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

func marketUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage:\n  souk market serve [options]          run a marketplace (souk market serve --help)")
	fmt.Fprintln(w, "  souk market [--market-url U] [--market-admin-token T] <command> [flags] [args]\n\nCommands (talk to a running market):")
	cmds := marketCommands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-18s %s\n", n, cmds[n].usage)
	}
	fmt.Fprintln(w, "\nSeller tools (interface debugging, debug cases, dial tests):")
	for _, l := range strings.Split(strings.TrimSpace(sellertools.CLIUsage), "\n") {
		fmt.Fprintln(w, "  "+l)
	}
	fmt.Fprintln(w, "\nSee docs/market.md.")
}

// isHelpArg reports whether arg asks for usage (-h, --help, help).
func isHelpArg(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

func marketClient(ctx context.Context, a *App, args []string) int {
	s := a.NewSettings("market")
	var base, token string
	s.String(&base, "market-url", "http://127.0.0.1:8090", "base URL of the running market")
	s.Secret(&token, "market-admin-token", "admin token of the market")
	s.FlagSet.Usage = func() { marketUsage(a.Stderr) }
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := s.FlagSet.Args()
	if len(rest) == 0 || rest[0] == "help" {
		marketUsage(a.Stdout)
		if len(rest) == 0 {
			return 2
		}
		return 0
	}
	switch rest[0] {
	case "debug", "cases", "dialtests":
		if len(rest) > 1 && isHelpArg(rest[1]) {
			fmt.Fprintf(a.Stdout, "usage:\n%s", sellertools.CLIUsage)
			return 0
		}
		if token == "" {
			fmt.Fprintln(a.Stderr, "souk market: the admin token is required (--market-admin-token or SOUK_MARKET_ADMIN_TOKEN[_FILE])")
			return 2
		}
		return sellertools.RunCLI(ctx, sellertools.NewClient(base, token, nil), a.Stdout, a.Stderr, rest[0], rest[1:])
	}
	cmd, ok := marketCommands()[rest[0]]
	if !ok {
		fmt.Fprintf(a.Stderr, "souk market: unknown command %q\n\n", rest[0])
		marketUsage(a.Stderr)
		return 2
	}
	fs := flag.NewFlagSet("market "+rest[0], flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	build := cmd.build(fs)
	// flags may come before or after the positional arguments
	var pos []string
	in := rest[1:]
	for {
		if err := fs.Parse(in); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		in = fs.Args()[1:]
	}
	if len(pos) < cmd.args {
		fmt.Fprintf(a.Stderr, "usage: souk market %s %s\n", rest[0], cmd.usage)
		return 2
	}
	method, path, body, err := build(pos)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk market:", err)
		return 2
	}
	if token == "" {
		fmt.Fprintln(a.Stderr, "souk market: the admin token is required (--market-admin-token or SOUK_MARKET_ADMIN_TOKEN[_FILE])")
		return 2
	}
	status, out, err := apiRequest(ctx, base, token, method, path, body)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk market:", err)
		return 1
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") != nil {
		pretty.Write(out)
	}
	if status >= 300 {
		fmt.Fprintf(a.Stderr, "souk market: HTTP %d\n%s\n", status, pretty.String())
		return 1
	}
	fmt.Fprintln(a.Stdout, pretty.String())
	return 0
}

func apiRequest(ctx context.Context, base, token, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+market.APIPrefix+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, out, err
}

// runDemo is `souk demo`: a market and a merchant (with an in-process vendor
// app) on loopback with embedded SQLite, one virtual clock, and a purchase
// walked through provisioning, expiry, renewal, freeze and release.
func runDemo(ctx context.Context, a *App, args []string) int {
	s := a.NewSettings("demo")
	var keep bool
	var level string
	s.Bool(&keep, "demo-keep", false, "keep the temporary directory with the two databases")
	s.String(&level, "log-level", "error", "log level of the market and the merchant")
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log, err := a.Logger(level, "text")
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk demo:", err)
		return 2
	}
	if err := demo(ctx, a.Stdout, log, keep); err != nil {
		fmt.Fprintln(a.Stderr, "souk demo:", err)
		return 1
	}
	return 0
}
