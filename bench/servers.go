package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant"
	"github.com/soukhq/souk/merchant/handoff"
)

// Credentials of the in-process fake market's Query Order API.
const (
	MarketAK = "BENCHMARKETAK"
	MarketSK = "bench-market-secret-key"
)

// server is an HTTP server on a loopback port with the settings of
// `souk merchant` (merchant.NewHTTPServer).
type server struct {
	srv *http.Server
	ln  net.Listener
}

func startServer(h http.Handler, log *slog.Logger) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: listen: %w", err)
	}
	s := &server{ln: ln, srv: merchant.NewHTTPServer(h, log)}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *server) URL() string { return "http://" + s.ln.Addr().String() }

func (s *server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// floorHandler is the floor: what any correct merchant must at least do per
// request. It reads the body, verifies the V2 signature over the raw bytes,
// inserts one row in its own transaction (durable before the answer, with
// db.Open's defaults) and answers with a Body-Sign header.
type floorHandler struct {
	db  *db.DB
	key string
}

const floorSchema = `CREATE TABLE IF NOT EXISTS bench_floor (nonce TEXT PRIMARY KEY, at BIGINT NOT NULL, body TEXT NOT NULL)`

func (f *floorHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code := kg.CodeSuccess
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	q := r.URL.Query()
	now := time.Now()
	if err != nil {
		code = kg.CodeBadParam
	} else if _, _, err := kg.VerifyV2([]string{f.key}, q.Get("signature"), q.Get("nonce"), q.Get("timestamp"), body, now, time.Minute); err != nil {
		code = kg.CodeAuthFailed
	} else if err := f.db.Tx(r.Context(), func(tx *db.Tx) error {
		_, err := tx.Exec(r.Context(), `INSERT INTO bench_floor (nonce, at, body) VALUES ($1, $2, $3)`, q.Get("nonce"), now.UnixMilli(), string(body))
		return err
	}); err != nil {
		code = kg.CodeInternal
	}
	writeAnswer(w, f.key, code)
}

// writeAnswer answers as a merchant does: HTTP 200, JSON, Body-Sign.
func writeAnswer(w http.ResponseWriter, key, code string) {
	out := []byte(`{"resultCode":"` + code + `","resultMsg":"success"}`)
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Body-Sign", kg.BodySignHeader(key, out))
	h.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// noDBHandler is ScenarioNoDB: a create without storage.
type noDBHandler struct {
	key    string
	orders *merchant.OrderClient
}

func (h *noDBHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code := kg.CodeSuccess
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	q := r.URL.Query()
	if err != nil {
		code = kg.CodeBadParam
	} else if _, _, err := kg.VerifyV2([]string{h.key}, q.Get("signature"), q.Get("nonce"), q.Get("timestamp"), body, time.Now(), time.Minute); err != nil {
		code = kg.CodeAuthFailed
	} else {
		var in struct {
			OrderID     string `json:"orderId"`
			OrderLineID string `json:"orderLineId"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			code = kg.CodeBadParam
		} else if _, err := h.orders.QueryOrder(r.Context(), in.OrderID, in.OrderLineID); err != nil {
			code = kg.CodeInternal
		}
	}
	writeAnswer(w, h.key, code)
}

// FakeMarket answers Query Order for any order id (a monthly PERIOD order
// of one line), verifying the APIG signature of every call.
// It is exported for the multi-process tests (package e2e). Calls and BadSig
// count the calls and the refused signatures.
type FakeMarket struct {
	Calls, BadSig atomic.Int64
}

func (f *FakeMarket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.Calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path != merchant.QueryOrderPath {
		http.NotFound(w, r)
		return
	}
	if _, err := kg.VerifyAPIG(r, body, func(ak string) (string, bool) { return MarketSK, ak == MarketAK }, time.Now(), kg.DefaultAPIGWindow); err != nil {
		f.BadSig.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = fmt.Fprintf(w, `{"resultCode":"MKT.0154","resultMsg":%q}`, err.Error())
		return
	}
	q := r.URL.Query()
	id, line := q.Get("orderId"), q.Get("orderLineId")
	if line == "" {
		line = id + "-000001"
	}
	_, _ = fmt.Fprintf(w, `{"resultCode":"MKT.0000","resultMsg":"Success","orderInfo":{"orderId":%q,"orderType":"NEW","createTime":"20260101000000",`+
		`"orderLine":[{"orderLineId":%q,"chargingMode":"PERIOD","periodType":"month","periodNumber":1,`+
		`"productInfo":[{"productId":"bench-product","skuCode":"bench-sku","linearValue":1}]}],`+
		`"buyerInfo":{"customerId":"bench-customer","customerName":"bench"}}}`, id, line)
}

// provisioner is the in-process vendor app of the merchant under bench: it
// completes every instance at once with generated appInfo.
type provisioner struct {
	calls atomic.Int64
}

func (p *provisioner) Provision(_ context.Context, ev *handoff.Stored) (*merchant.Answer, error) {
	p.calls.Add(1)
	if ev.Type != merchant.EventCreated {
		return nil, nil
	}
	return &merchant.Answer{AppInfo: &merchant.AppInfo{
		FrontEndURL: "https://app.example.com/i/" + ev.Subject,
		UserName:    "admin",
		Password:    "bench-password",
	}}, nil
}

// freshDB returns the DSN of an empty database for name: a new SQLite file
// under dir, or a new database on the PostgreSQL server of spec. drop removes
// it.
func freshDB(ctx context.Context, log *slog.Logger, spec, dir, name string) (dsn string, drop func(), err error) {
	if spec == "" || spec == "sqlite" {
		return filepath.Join(dir, name+".db"), func() {}, nil
	}
	if !strings.HasPrefix(spec, "postgres://") && !strings.HasPrefix(spec, "postgresql://") {
		return "", nil, fmt.Errorf("bench: --db %q: want sqlite or a postgres:// server DSN", spec)
	}
	admin, err := db.Open(ctx, spec)
	if err != nil {
		return "", nil, fmt.Errorf("bench: postgres server: %w", err)
	}
	dbname := "souk_bench_" + name + "_" + randHex(4)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+dbname); err != nil {
		_ = admin.Close()
		return "", nil, fmt.Errorf("bench: create database %s: %w", dbname, err)
	}
	u, err := url.Parse(spec)
	if err != nil {
		_ = admin.Close()
		return "", nil, fmt.Errorf("bench: --db: %w", err)
	}
	u.Path = "/" + dbname
	drop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+dbname+" WITH (FORCE)"); err != nil {
			log.Warn("bench: drop database", "name", dbname, "err", err)
		}
		_ = admin.Close()
	}
	return u.String(), drop, nil
}
