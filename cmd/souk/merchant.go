package main

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/merchant"
	"github.com/soukhq/souk/merchant/handoff"
	"github.com/soukhq/souk/merchant/kit"
	"github.com/soukhq/souk/merchant/sso"
	"github.com/soukhq/souk/tlscert"
)

const merchantHelp = `Usage:
  souk merchant [options]                 run the merchant server
  souk merchant events list [options]     list hand-off events (--state pending|delivered|dead, --type, --subject, --limit)
  souk merchant events replay ID [opts]   deliver an event again
  souk merchant events replay --dead      deliver every dead-lettered event again
  souk merchant public-key [--data DIR]   print the joint-operation RSA public key (generated on first use;
                                          --kit-private-key gives the key; --adopt records it in the database)
  souk merchant backup --out DIR          copy a running SQLite merchant (database and key pair) into a new
                                          data directory, consistent and checked (PostgreSQL: pg_dump)
  souk merchant help                      this text

"souk merchant -h" lists the server options; the tools (events, public-key, backup) take --db/--data.
See docs/merchant.md.
`

func runMerchant(ctx context.Context, a *App, args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "help":
			fmt.Fprint(a.Stdout, merchantHelp)
			return 0
		case "events":
			return runMerchantEvents(ctx, a, args[1:])
		case "public-key":
			return runMerchantPublicKey(ctx, a, args[1:])
		case "backup":
			return runMerchantBackup(ctx, a, args[1:])
		}
	}
	return runMerchantServer(ctx, a, args)
}

// dbOptions are the storage options shared by the server and the tools.
type dbOptions struct {
	data string
	dsn  string
}

func (o *dbOptions) declare(s *Settings) {
	s.String(&o.data, "data", "./souk-data", "data directory (the SQLite database lives here unless --db is set)")
	s.SecretShown(&o.dsn, "db", "database DSN: postgres://… for PostgreSQL; empty → SQLite file <data>/merchant.db", db.Redact)
}

// sqliteFile is the name of the SQLite database in the data directory.
const sqliteFile = "merchant.db"

// openExisting opens, for a command that works on a merchant's store, the
// database a merchant made before (and migrates it if asked). A data directory without
// a database, a SQLite file that does not exist and a database no merchant
// ever used are refused: a mistyped --data or --db must not open (and
// create) an empty store that the command would then report on as if it
// were the merchant's.
func (o *dbOptions) openExisting(ctx context.Context, migrate bool) (*db.DB, string, error) {
	dsn := o.dsn
	if dsn == "" {
		dsn = filepath.Join(o.data, sqliteFile)
		if _, err := os.Stat(dsn); err != nil {
			return nil, "", fmt.Errorf("no merchant database in data directory %s (is --data the directory souk merchant runs with?): %w", o.data, err)
		}
	}
	d, err := db.OpenExisting(ctx, dsn)
	if err != nil {
		return nil, "", err
	}
	where := db.Redact(dsn)
	applied, err := d.Applied(ctx, "merchant")
	if err != nil || len(applied) == 0 {
		_ = d.Close()
		return nil, "", fmt.Errorf("%s holds no souk merchant database (no merchant migration recorded): check --db and --data", where)
	}
	if !migrate {
		return d, where, nil
	}
	return o.migrated(ctx, d, where)
}

// openRaw opens the database without migrating it.
func (o *dbOptions) openRaw(ctx context.Context) (*db.DB, string, error) {
	dsn := o.dsn
	if dsn == "" {
		if err := os.MkdirAll(o.data, 0o700); err != nil {
			return nil, "", fmt.Errorf("data directory: %w", err)
		}
		dsn = filepath.Join(o.data, sqliteFile)
	}
	d, err := db.Open(ctx, dsn)
	if err != nil {
		return nil, "", err
	}
	return d, db.Redact(dsn), nil
}

func (o *dbOptions) open(ctx context.Context) (*db.DB, string, error) {
	d, where, err := o.openRaw(ctx)
	if err != nil {
		return nil, "", err
	}
	return o.migrated(ctx, d, where)
}

func (o *dbOptions) migrated(ctx context.Context, d *db.DB, where string) (*db.DB, string, error) {
	if err := merchant.Migrate(ctx, d); err != nil {
		_ = d.Close()
		return nil, "", err
	}
	return d, where, nil
}

// runMerchantBackup writes a backup of a SQLite merchant, taken while it
// runs, into a new directory that can serve as a data directory.
func runMerchantBackup(ctx context.Context, a *App, args []string) int {
	s := a.NewSettings("merchant backup")
	var (
		dbo dbOptions
		out string
	)
	dbo.declare(s)
	s.String(&out, "out", "", "new directory to write the backup to (it must not exist)")
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(a.Stderr, "souk merchant backup:", err)
		return 2
	}
	if out == "" {
		fmt.Fprintln(a.Stderr, "souk merchant backup: --out is required")
		return 2
	}
	if dbo.dsn != "" && db.DialectOf(dbo.dsn) != db.SQLite {
		fmt.Fprintf(a.Stderr, "souk merchant backup: %s is PostgreSQL: back it up with pg_dump or a base backup (docs/storage.md); keep %s of each replica's data directory (or the --kit-private-key) with it\n",
			db.Redact(dbo.dsn), kit.KeyFile)
		return 2
	}
	d, where, err := dbo.openExisting(ctx, false)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant backup: database:", err)
		return 1
	}
	defer d.Close()
	now, start := clock.Real{}.Now(), time.Now()
	lines, err := backupTo(ctx, d, where, dbo.data, out)
	msg := "to " + out
	if len(lines) > 0 {
		msg = lines[0]
	}
	auditCommand(ctx, a, d, now, "backup", err, msg, start)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant backup:", err)
		return 1
	}
	for _, l := range lines {
		fmt.Fprintln(a.Stdout, l)
	}
	fmt.Fprintf(a.Stdout, "restore: stop the merchant, then start it with --data %s (or copy these files into its data directory)\n", out)
	return 0
}

// backupTo writes the snapshot of d and a copy of the data directory's key
// pair into the new directory out, and says what it wrote.
func backupTo(ctx context.Context, d *db.DB, where, data, out string) (lines []string, err error) {
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(out)), 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(out, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			// Nothing half-made stays behind to block the next attempt.
			_ = os.RemoveAll(out)
		}
	}()
	snap := filepath.Join(out, sqliteFile)
	if err := d.Snapshot(ctx, snap); err != nil {
		return nil, err
	}
	st, err := os.Stat(snap)
	if err != nil {
		return nil, err
	}
	lines = []string{fmt.Sprintf("%s: snapshot of %s (%d bytes, integrity ok)", snap, where, st.Size())}
	// The joint-operation key pair decrypts the client secrets stored in the
	// database: a backup without it could not serve them.
	keyFile := filepath.Join(data, kit.KeyFile)
	b, err := os.ReadFile(keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return lines, nil
	} else if err != nil {
		return lines, err
	}
	if err := writeNew(filepath.Join(out, kit.KeyFile), b); err != nil {
		return lines, err
	}
	return append(lines, fmt.Sprintf("%s: copy of %s", filepath.Join(out, kit.KeyFile), keyFile)), nil
}

// writeNew writes a new file (mode 0600) and syncs it.
func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func runMerchantServer(ctx context.Context, a *App, args []string) int {
	s := a.NewSettings("merchant")
	var (
		listen, adminListen, keys, generalKeys, encProducts, proxies, tlsCert, tlsKey, logLevel, logFormat string
		maxBody                                                                                            int
		dbo                                                                                                dbOptions
		cfg                                                                                                merchant.Config
		joint                                                                                              jointOptions
	)
	s.String(&listen, "listen", ":8080", "listen address")
	s.String(&adminListen, "admin-listen", "", "serve the management API and /metrics on this address instead (plain HTTP; loopback or an internal network), not on --listen")
	dbo.declare(s)
	s.Secret(&keys, "access-key", "KooGallery access key(s) bound to the basic interfaces, comma-separated during a rotation")
	s.Secret(&generalKeys, "general-key", "KooGallery general (通用接口) key(s) verifying orderNotify, comma-separated during a rotation; empty: the access keys verify it")
	s.String(&cfg.BasePath, "base-path", "/koogallery", "path of the production interface address")
	s.URL(&cfg.MarketURL, "market-url", "", "marketplace open-API base URL (Query Order, usage push), e.g. https://mkt.myhuaweicloud.com or a souk market")
	s.URL(&cfg.MarketFallbackURL, "market-fallback-url", "", "tried for Query Order when --market-url is unreachable (CN: https://mkt.myhuaweicloud.cn)")
	s.String(&cfg.MarketAK, "market-ak", "", "AK for APIG-signed open-API calls (Query Order)")
	s.Secret(&cfg.MarketSK, "market-sk", "SK for APIG-signed open-API calls")
	s.URL(&cfg.WebhookURL, "webhook-url", "", "vendor app URL receiving signed hand-off events (empty: complete through the management API)")
	s.Secret(&cfg.WebhookSecret, "webhook-secret", "HMAC secret(s) of the Souk-Signature webhook header, comma-separated while rotating: each signs every webhook")
	s.URL(&cfg.SandboxWebhookURL, "sandbox-webhook-url", "", "receives testFlag=1 (sandbox) events; empty: souk completes them itself with demo appInfo")
	s.Int(&cfg.WebhookMaxAttempts, "webhook-max-attempts", 12, "delivery attempts before an event is dead-lettered")
	s.Secret(&cfg.AdminToken, "admin-token", "bearer token(s) of the management API (/api/v1), comma-separated while rotating; empty disables it")
	s.String(&cfg.EncryptType, "encrypt-type", "0", "appInfo credential encryption: 0 plaintext, 1 AES-256, 2 AES-128")
	s.String(&encProducts, "product-encrypt-types", "", "per-product overrides, e.g. prodA=1,prodB=0")
	s.Duration(&cfg.Budget, "budget", 4*time.Second, "time newInstance may work before answering 000004 (KooGallery waits 5 s)")
	s.Duration(&cfg.Window, "window", 60*time.Second, "accepted clock skew of request timestamps")
	s.Int(&maxBody, "max-body", 64<<10, "maximum request body in bytes")
	s.Duration(&cfg.AuditRetention, "audit-retention", 0, "prune audit_log rows older than this (0 keeps them, but for those --audit-retention-rejected prunes)")
	s.Duration(&cfg.AuditRetentionRejected, "audit-retention-rejected", 30*24*time.Hour, "prune the audit_log rows of calls no credential authenticated (bad signature or token, unknown path) older than this, when shorter than --audit-retention (0: as --audit-retention)")
	s.String(&proxies, "trusted-proxies", "", "reverse proxies / load balancers in front (addresses or CIDRs, comma-separated): their X-Forwarded-For names the client in audit records")
	s.String(&tlsCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key serves HTTPS; a renewed pair is read again without a restart")
	s.String(&tlsKey, "tls-key", "", "TLS private key file (PEM)")
	joint.declare(s)
	s.String(&logLevel, "log-level", "info", "debug, info, warn or error")
	s.String(&logFormat, "log-format", "json", "json or text")
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(a.Stderr, "souk merchant:", err)
		return 2
	}
	if s.FlagSet.NArg() > 0 {
		fmt.Fprintf(a.Stderr, "souk merchant: unexpected argument %q\n\n%s", s.FlagSet.Arg(0), merchantHelp)
		return 2
	}
	log, err := a.Logger(logLevel, logFormat)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant:", err)
		return 2
	}
	cfg.AccessKeys = merchant.SplitKeys(keys)
	cfg.GeneralKeys = merchant.SplitKeys(generalKeys)
	cfg.MaxBody = int64(maxBody)
	if cfg.TrustedProxies, err = merchant.ParseTrustedProxies(proxies); err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant:", err)
		return 2
	}
	if cfg.ProductEncrypt, err = merchant.ParseProductEncrypt(encProducts); err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant:", err)
		return 2
	}
	if (tlsCert == "") != (tlsKey == "") {
		fmt.Fprintln(a.Stderr, "souk merchant: --tls-cert and --tls-key go together")
		return 2
	}
	// merchant.Config reads zero as "the default": a zero or negative value
	// given here would be printed as in force while another one applied.
	for _, bad := range []struct {
		is   bool
		text string
	}{
		{maxBody <= 0, fmt.Sprintf("--max-body %d: want a positive number of bytes", maxBody)},
		{cfg.Budget <= 0, fmt.Sprintf("--budget %s: want a positive duration", cfg.Budget)},
		{cfg.Window <= 0, fmt.Sprintf("--window %s: want a positive duration", cfg.Window)},
		{cfg.WebhookMaxAttempts <= 0, fmt.Sprintf("--webhook-max-attempts %d: want at least 1", cfg.WebhookMaxAttempts)},
		{cfg.AuditRetention < 0, fmt.Sprintf("--audit-retention %s: want 0 (keep) or a positive duration", cfg.AuditRetention)},
		{cfg.AuditRetentionRejected < 0, fmt.Sprintf("--audit-retention-rejected %s: want 0 (as --audit-retention) or a positive duration", cfg.AuditRetentionRejected)},
		{adminListen != "" && adminListen == listen, fmt.Sprintf("--admin-listen %s: the same address as --listen; give another, or none to serve the management API on --listen", adminListen)},
	} {
		if bad.is {
			fmt.Fprintln(a.Stderr, "souk merchant:", bad.text)
			return 2
		}
	}
	if joint.kitMaxBody < 1<<10 || joint.kitMaxBody > 64<<20 {
		fmt.Fprintf(a.Stderr, "souk merchant: --kit-max-body %d: want 1024 to %d bytes\n", joint.kitMaxBody, 64<<20)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant: configuration:", err)
		return 2
	}
	fmt.Fprintln(a.Stderr, "souk merchant configuration:")
	s.Print(a.Stderr)
	var certs *tlscert.Reloader
	if tlsCert != "" {
		// Read again while serving: a renewed certificate needs no restart.
		if certs, err = tlscert.New(tlsCert, tlsKey, clock.Real{}, log.With("component", "tls")); err != nil {
			fmt.Fprintln(a.Stderr, "souk merchant:", err)
			return 2
		}
	}

	d, where, err := dbo.open(ctx)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant: database:", err)
		return 1
	}
	defer d.Close()
	m, err := merchant.New(cfg, merchant.Deps{DB: d, Clock: clock.Real{}, Logger: log})
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant:", err)
		return 2
	}
	defer m.Close()
	if err := joint.mount(ctx, m, d, dbo.data, cfg, log); err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant:", err)
		return 2
	}
	if certs != nil {
		m.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "souk_merchant_tls_cert_expiry_timestamp_seconds",
			Help: "Expiry (Unix time) of the TLS certificate being served; the files are read again every 10 s."},
			func() float64 { return float64(certs.NotAfter().Unix()) }))
	}
	if err := serveMerchant(ctx, log, m, listen, adminListen, certs, where); err != nil {
		log.Error("merchant stopped", "err", err)
		return 1
	}
	return 0
}

// serveMerchant serves the merchant on listen (TLS with certs) until ctx
// ends or a server fails. With adminListen, the management API and /metrics
// are served there (plain HTTP: bind it to loopback or an internal network)
// and no longer on listen.
func serveMerchant(ctx context.Context, log *slog.Logger, m *merchant.Merchant, listen, adminListen string, certs *tlscert.Reloader, where string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	srv := merchant.NewHTTPServer(m.Handler(), log)
	var adminLn net.Listener
	var adminSrv *http.Server
	if adminListen != "" {
		if adminLn, err = net.Listen("tcp", adminListen); err != nil {
			_ = ln.Close()
			return fmt.Errorf("admin listen %s: %w", adminListen, err)
		}
		srv.Handler, adminSrv = m.PublicHandler(), merchant.NewHTTPServer(m.AdminHandler(), log)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()
	serveErr := make(chan error, 2)
	go func() {
		if certs != nil {
			srv.TLSConfig = &tls.Config{GetCertificate: certs.GetCertificate}
			serveErr <- srv.ServeTLS(ln, "", "")
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()
	if adminSrv != nil {
		go func() { serveErr <- adminSrv.Serve(adminLn) }()
		announce(ctx, log, "souk merchant admin side listening (management API, /metrics)", "addr", adminLn.Addr().String())
	}
	announce(ctx, log, "souk merchant listening", "addr", ln.Addr().String(), "tls", certs != nil, "basePath", m.Config().BasePath, "db", where)
	var err2 error
	ran := false
	select {
	case <-ctx.Done():
	case err2 = <-serveErr:
	case err2 = <-runErr:
		ran = true
	}
	shutdown, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = srv.Shutdown(shutdown)
	if adminSrv != nil {
		_ = adminSrv.Shutdown(shutdown)
	}
	cancel()
	if !ran {
		// The background work stops with ctx: wait for it (a job in
		// flight finishes), within the same deadline as the server.
		select {
		case <-runErr:
		case <-shutdown.Done():
			log.Warn("background work still running at shutdown")
		}
	}
	if errors.Is(err2, http.ErrServerClosed) {
		err2 = nil
	}
	return err2
}

func runMerchantEvents(ctx context.Context, a *App, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(a.Stderr, merchantHelp)
		return 2
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(a.Stdout, merchantHelp)
		return 0
	}
	s := a.NewSettings("merchant events " + sub)
	if sub == "replay" {
		s.Args = " ID... | --dead"
	}
	var (
		dbo                 dbOptions
		state, typ, subject string
		limit               int
		dead, asJSON        bool
	)
	dbo.declare(s)
	switch sub {
	case "list":
		s.FlagSet.StringVar(&state, "state", "", "pending, delivered or dead")
		s.FlagSet.StringVar(&typ, "type", "", "event type, e.g. instance.created")
		s.FlagSet.StringVar(&subject, "subject", "", "subject (instanceId, …)")
		s.FlagSet.IntVar(&limit, "limit", 50, "how many, newest first")
		s.FlagSet.BoolVar(&asJSON, "json", false, "print JSON lines")
	case "replay":
		s.FlagSet.BoolVar(&dead, "dead", false, "replay every dead-lettered event")
	default:
		fmt.Fprintf(a.Stderr, "souk merchant events: unknown command %q\n\n%s", sub, merchantHelp)
		return 2
	}
	// Accept the event id before or after the flags.
	var ids []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		ids, args = append(ids, args[0]), args[1:]
	}
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(a.Stderr, "souk merchant events:", err)
		return 2
	}
	ids = append(ids, s.FlagSet.Args()...)
	if state != "" && !handoff.IsState(state) {
		fmt.Fprintf(a.Stderr, "souk merchant events list: --state %q: want pending, delivered or dead\n", state)
		return 2
	}
	if sub == "list" && (limit < 1 || limit > 1000) {
		fmt.Fprintf(a.Stderr, "souk merchant events list: --limit %d: want 1 to 1000\n", limit)
		return 2
	}
	d, _, err := dbo.openExisting(ctx, true)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant events: database:", err)
		return 1
	}
	defer d.Close()
	now := clock.Real{}.Now()
	switch sub {
	case "list":
		evs, err := handoff.List(ctx, d, handoff.Filter{State: state, Type: typ, Subject: subject, Limit: limit})
		if err != nil {
			fmt.Fprintln(a.Stderr, "souk merchant events list:", err)
			return 1
		}
		printEvents(a.Stdout, evs, asJSON)
		return 0
	case "replay":
		switch {
		case dead && len(ids) == 0:
			start := time.Now()
			replayed, err := handoff.ReplayDead(ctx, d, now)
			auditCommand(ctx, a, d, now, "events replay --dead", err, fmt.Sprintf("%d event(s): %s", len(replayed), strings.Join(replayed, ",")), start)
			if err != nil {
				fmt.Fprintln(a.Stderr, "souk merchant events replay --dead:", err)
				return 1
			}
			fmt.Fprintf(a.Stdout, "replayed %d dead event(s); a running merchant delivers them\n", len(replayed))
			for _, id := range replayed {
				fmt.Fprintln(a.Stdout, id)
			}
			return 0
		case !dead && len(ids) > 0:
			for _, id := range ids {
				start := time.Now()
				err := handoff.Replay(ctx, d, now, id)
				auditCommand(ctx, a, d, now, "events replay", err, "event "+id, start)
				if err != nil {
					fmt.Fprintln(a.Stderr, "souk merchant events replay:", err)
					return 1
				}
				fmt.Fprintln(a.Stdout, "replaying", id)
			}
			return 0
		}
		fmt.Fprintln(a.Stderr, "souk merchant events replay: give event ids or --dead (not both)")
		return 2
	}
	return 2
}

// auditCommand records a management command in the merchant's audit log; a
// record that cannot be written is said on stderr (the action stands).
func auditCommand(ctx context.Context, a *App, d *db.DB, at time.Time, activity string, actErr error, message string, start time.Time) {
	if err := merchant.AuditCommand(ctx, d, at, activity, actErr, message, time.Since(start)); err != nil {
		fmt.Fprintf(a.Stderr, "souk merchant %s: the audit record was not written: %v\n", activity, err)
	}
}

func printEvents(w io.Writer, evs []handoff.Stored, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, ev := range evs {
			_ = enc.Encode(ev)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSUBJECT\tSTATE\tATTEMPTS\tCREATED\tLAST ERROR")
	for _, ev := range evs {
		sandbox := ""
		if ev.TestFlag {
			sandbox = " (sandbox)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s%s\t%s\t%d\t%s\t%.80s\n", ev.ID, ev.Type, ev.Subject, sandbox, ev.State, ev.Attempts,
			ev.CreatedAt.Format(time.RFC3339), ev.LastError)
	}
	_ = tw.Flush()
}

// jointOptions enable the joint-operation (联营) parts: the kit sync
// interfaces under the production address and single sign-on.
type jointOptions struct {
	kitKeys, kitPrivateKey, identityKeys, ssoBaseURL, ssoAppURL, ssoAppID string
	ssoRequireState, ssoNoPKCE                                            bool
	kitMaxBody                                                            int
}

// declareKitPrivateKey declares the key pair option, shared by the server and
// public-key.
func declareKitPrivateKey(s *Settings, p *string) {
	s.Secret(p, "kit-private-key", "joint-operation RSA private key (PEM, ≥ 3072 bits) decrypting clientSecrets; empty: <data>/"+kit.KeyFile+
		", generated on first start. Replicas sharing a database must share the key")
}

// kitKeyPair is the joint-operation key pair: the option's, or the data
// directory's (generated on first use).
func kitKeyPair(pemText, dataDir string) (*rsa.PrivateKey, error) {
	if pemText != "" {
		return kit.ParsePrivateKey(pemText)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	return kit.EnsureKeyPair(dataDir)
}

func (o *jointOptions) declare(s *Settings) {
	s.Secret(&o.kitKeys, "kit-key", "joint-operation kit key(s), comma-separated; set → serve the kit sync interfaces at <base-path>/produceAPI/v2/…")
	declareKitPrivateKey(s, &o.kitPrivateKey)
	s.Int(&o.kitMaxBody, "kit-max-body", kit.DefaultMaxBody, "maximum kit sync body in bytes (also the bound of the sorted-signature fallback; an allOrgSync of very many departments may need more)")
	s.String(&o.ssoBaseURL, "sso-base-url", "", "public URL where souk serves /sso/… (set → single sign-on enabled)")
	s.Secret(&o.identityKeys, "identity-key", "key(s) signing the identity tokens given to the vendor app (≥ 32 bytes each, comma-separated)")
	s.String(&o.ssoAppURL, "sso-app-url", "", "where the browser lands after login (default <sso-base-url>/)")
	s.String(&o.ssoAppID, "sso-app-id", "", "app credential to use when a tenant has several")
	s.Bool(&o.ssoRequireState, "sso-require-state", false, "refuse SSO callbacks without state; KooGallery's unified login page sends none, so set it only when every sign-in starts at /sso/login (login-CSRF protection)")
	s.Bool(&o.ssoNoPKCE, "sso-no-pkce", false, "send no PKCE code_challenge/code_verifier (sent by default; for an identity provider that refuses parameters it does not know)")
}

func (o *jointOptions) mount(ctx context.Context, m *merchant.Merchant, d *db.DB, dataDir string, cfg merchant.Config, log *slog.Logger) error {
	if o.kitKeys == "" && o.ssoBaseURL == "" {
		return nil
	}
	if err := kit.Migrate(ctx, d); err != nil {
		return err
	}
	priv, err := kitKeyPair(o.kitPrivateKey, dataDir)
	if err != nil {
		return err
	}
	if err := kit.BindKey(ctx, d, clock.Real{}.Now(), priv); err != nil {
		return err
	}
	k := kit.New(kit.Config{Keys: kit.ParseKeys(o.kitKeys), PrivateKey: priv, APIToken: cfg.AdminToken, MaxBody: int64(o.kitMaxBody)},
		kit.Deps{DB: d, Clock: clock.Real{}, Logger: log.With("component", "kit"), Registerer: m.Registry()})
	base := strings.TrimRight(cfg.BasePath, "/")
	if o.kitKeys != "" {
		m.Handle(base+"/produceAPI/v2/", http.StripPrefix(base, k.Handler()))
		m.HandleAdmin("/api/v1/tenants/", k.APIHandler())
		log.Info("kit sync interfaces enabled", "path", base+"/produceAPI/v2/")
	}
	if o.ssoBaseURL == "" {
		return nil
	}
	if err := sso.Migrate(ctx, d); err != nil {
		return err
	}
	keys, err := sso.ParseKeys(o.identityKeys)
	if err != nil {
		return fmt.Errorf("--identity-key (SOUK_IDENTITY_KEY), required with --sso-base-url: %w", err)
	}
	svc, err := sso.New(sso.Config{BaseURL: strings.TrimRight(o.ssoBaseURL, "/"), AppURL: o.ssoAppURL, AppID: o.ssoAppID,
		IdentityKeys: keys, RequireState: o.ssoRequireState, DisablePKCE: o.ssoNoPKCE},
		sso.Deps{DB: d, Directory: k, Clock: clock.Real{}, Logger: log.With("component", "sso"), Registerer: m.Registry()})
	if err != nil {
		return err
	}
	m.Handle("/sso/", svc.Handler())
	log.Info("single sign-on enabled", "baseURL", o.ssoBaseURL)
	return nil
}

func runMerchantPublicKey(ctx context.Context, a *App, args []string) int {
	s := a.NewSettings("merchant public-key")
	var (
		dbo     dbOptions
		pemText string
		adopt   bool
	)
	dbo.declare(s)
	declareKitPrivateKey(s, &pemText)
	s.Bool(&adopt, "adopt", false, "record this key as the merchant database's key pair (after replacing the key on purpose)")
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(a.Stderr, "souk merchant public-key:", err)
		return 2
	}
	var (
		d     *db.DB
		where string
		err   error
	)
	if adopt {
		// The store first: a mistyped --data must not get a new key pair.
		if d, where, err = dbo.openExisting(ctx, true); err != nil {
			fmt.Fprintln(a.Stderr, "souk merchant public-key: database:", err)
			return 1
		}
		defer d.Close()
	}
	keyPath := filepath.Join(dbo.data, kit.KeyFile)
	_, statErr := os.Stat(keyPath)
	generated := pemText == "" && errors.Is(statErr, fs.ErrNotExist)
	priv, err := kitKeyPair(pemText, dbo.data)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant public-key:", err)
		return 1
	}
	if generated {
		// Say so: a mistyped --data gets a new key pair too, and a public key
		// registered in Seller Center that no merchant holds.
		fmt.Fprintf(a.Stderr, "souk merchant public-key: generated a new key pair in %s (there was none); if this --data is not the merchant's, delete it and give the right one\n", keyPath)
	}
	pub, err := kit.PublicKeyBase64(priv)
	if err != nil {
		fmt.Fprintln(a.Stderr, "souk merchant public-key:", err)
		return 1
	}
	if adopt {
		if err := kit.Migrate(ctx, d); err != nil {
			fmt.Fprintln(a.Stderr, "souk merchant public-key: database:", err)
			return 1
		}
		now, start := clock.Real{}.Now(), time.Now()
		old, err := kit.AdoptKey(ctx, d, now, priv)
		fp, _ := kit.Fingerprint(priv)
		msg := fmt.Sprintf("kit key %.16s… recorded", fp)
		if old != "" {
			msg += fmt.Sprintf(", replacing %.16s…", old)
		}
		auditCommand(ctx, a, d, now, "public-key --adopt", err, msg, start)
		if err != nil {
			fmt.Fprintln(a.Stderr, "souk merchant public-key:", err)
			return 1
		}
		if old != "" {
			fmt.Fprintf(a.Stderr, "recorded key %.16s… in %s, replacing %.16s…: upload the public key below in Seller Center\n", fp, where, old)
		} else {
			fmt.Fprintf(a.Stderr, "recorded key %.16s… in %s\n", fp, where)
		}
	}
	fmt.Fprintln(a.Stdout, pub)
	return 0
}
