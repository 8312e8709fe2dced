package merchant

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/auditnote"
	"github.com/soukhq/souk/merchant/kit"
)

// Handlers mounted with Handle (kit syncs, SSO, tenant API) leave an audit
// record per call, with the protocol resultCode of a JSON answer and never
// the request body.
func TestMountedHandlersAreAudited(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.m.Handle("/koogallery/produceAPI/v2/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"resultCode":"000001","resultMsg":"bad x-sign"}`))
		}))
		e.m.Handle("/sso/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			auditnote.Instance(r.Context(), "inst-9")
			auditnote.Add(r.Context(), "tenant", r.URL.Query().Get("tenant"))
			http.Redirect(w, r, "https://idp.example.com/authorize", http.StatusFound)
		}))
		resp, err := http.Post(e.srv.URL+"/koogallery/produceAPI/v2/tenantSync", "application/json",
			strings.NewReader(`{"clientSecret":"do-not-log-me"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err = client.Get(e.srv.URL + "/sso/login?tenant=t1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()

		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE source = 'kit' AND result_code = '000001' AND activity = 'POST /koogallery/produceAPI/v2/tenantSync'`); n != 1 {
			t.Fatalf("%d kit audit rows, want 1", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE source = 'sso' AND result_code = 'HTTP Found' AND instance_id = 'inst-9' AND message = 'tenant=t1'`); n != 1 {
			t.Fatalf("%d sso audit rows with the handler's note, want 1", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE message LIKE '%do-not-log-me%' OR activity LIKE '%do-not-log-me%'`); n != 0 {
			t.Fatal("a request body reached the audit log")
		}
	})
}

// Audit retention: --audit-retention prunes every record past it;
// --audit-retention-rejected prunes sooner the records of calls that no
// credential authenticated, and only those. The rejected calls are made for
// real, so that the condition matches what the handlers write.
func TestAuditRetention(t *testing.T) {
	const day = 24 * time.Hour
	forBackends(t, func(t *testing.T, backend string) {
		cases := []struct {
			name              string
			retention, reject time.Duration
			wantAuthed        int // left of the 3 authenticated records, 40 days old
			wantRejected      int // left of the 4 rejected records, 40 days old
		}{
			{"keep everything", 0, 0, 3, 4},
			{"rejected after 30 days", 0, 30 * day, 3, 0},
			{"rejected retention longer than the general one", 20 * day, 60 * day, 0, 0},
			{"both", 90 * day, 30 * day, 3, 0},
			{"nothing old enough", 90 * day, 50 * day, 3, 4},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e := newEnv(t, backend, func(cfg *Config, _ *Deps) { cfg.AuditRetention, cfg.AuditRetentionRejected = c.retention, c.reject })
				// Authenticated: a signed call, a management API call with the token
				// (and, below, a kit call answered 000000).
				e.call(map[string]string{"activity": "queryInstance", "instanceId": "nope"})
				if st, _ := e.api("GET", "/api/v1/events", nil, testAdmin); st != 200 {
					t.Fatalf("api: %d", st)
				}
				// Rejected: a bad signature, a bad token, a path nobody serves.
				e.call(map[string]string{"activity": "queryInstance", "instanceId": "nope"}, func(o *callOpt) { o.badSig = true })
				if st, _ := e.api("GET", "/api/v1/events", nil, "wrong-token"); st != 401 {
					t.Fatalf("api with a wrong token: %d", st)
				}
				resp, err := http.Get(e.srv.URL + "/wp-login.php")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				// And a kit call refused 000001, written as the kit handler writes it.
				e.m.audit(e.ctx, auditEntry{At: e.clock.Now(), Source: "kit", ResultCode: kg.CodeAuthFailed, Activity: "POST /koogallery/produceAPI/v2/tenantSync"})
				e.m.audit(e.ctx, auditEntry{At: e.clock.Now(), Source: "kit", ResultCode: kg.CodeSuccess, Activity: "POST /koogallery/produceAPI/v2/tenantSync"})

				rejected := e.count(`SELECT COUNT(*) FROM audit_log WHERE ` + RejectedAudit)
				all := e.count(`SELECT COUNT(*) FROM audit_log`)
				if rejected != 4 || all != 7 {
					t.Fatalf("before pruning: %d rejected of %d records, want 4 of 7", rejected, all)
				}
				e.clock.Advance(40 * day)
				e.m.housekeep(e.ctx)
				if got := e.count(`SELECT COUNT(*) FROM audit_log WHERE ` + RejectedAudit); got != c.wantRejected {
					t.Errorf("rejected records left: %d, want %d", got, c.wantRejected)
				}
				if got := e.count(`SELECT COUNT(*) FROM audit_log WHERE NOT ` + RejectedAudit); got != c.wantAuthed {
					t.Errorf("authenticated records left: %d, want %d", got, c.wantAuthed)
				}
			})
		}
	})
}

// A backlog larger than one pruning chunk is pruned whole, chunk by chunk.
func TestAuditPruneInChunks(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, func(cfg *Config, _ *Deps) { cfg.AuditRetention = time.Hour })
		old := e.clock.Now().Add(-2 * time.Hour)
		n := 2*auditPruneChunk + 7
		batch := make([]auditEntry, 0, 1000)
		for i := range n {
			batch = append(batch, auditEntry{At: old, Source: "kg", Activity: "queryInstance", KeyIndex: -1, ResultCode: "000001"})
			if len(batch) == cap(batch) || i == n-1 {
				if err := insertAudits(e.ctx, e.db, batch); err != nil {
					t.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		e.m.audit(e.ctx, auditEntry{At: e.clock.Now(), Source: "kg", Activity: "queryInstance", KeyIndex: 0, ResultCode: "000000"})
		got, err := e.m.pruneAudit(e.ctx, e.clock.Now())
		if err != nil || got != int64(n) {
			t.Fatalf("pruned %d (%v), want %d", got, err, n)
		}
		if left := e.count(`SELECT COUNT(*) FROM audit_log`); left != 1 {
			t.Fatalf("%d records left, want the recent one", left)
		}
	})
}

// The tenant directory API (kit.APIHandler, mounted with HandleAdmin) is a
// management API call like the others: one refused for a wrong bearer token
// is a rejected record, pruned after --audit-retention-rejected, and one the
// token authenticated is not. Its records carry the handler's HTTP status
// ("HTTP Unauthorized"), not the number serveAPI writes.
func TestRejectedTenantAPIRecords(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		if err := kit.Migrate(e.ctx, e.db); err != nil {
			t.Fatal(err)
		}
		k := kit.New(kit.Config{APIToken: testAdmin}, kit.Deps{DB: e.db, Clock: e.clock})
		e.m.HandleAdmin("/api/v1/tenants/", k.APIHandler())
		if st, _ := e.api("GET", "/api/v1/tenants/t-1", nil, "wrong-token"); st != http.StatusUnauthorized {
			t.Fatalf("tenant API with a wrong token: %d", st)
		}
		if st, _ := e.api("GET", "/api/v1/tenants/t-1", nil, testAdmin); st != http.StatusNotFound {
			t.Fatalf("tenant API with the token, unknown tenant: %d", st)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE activity LIKE '%/api/v1/tenants/%'`); n != 2 {
			t.Fatalf("%d tenant API audit records, want 2", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE activity LIKE '%/api/v1/tenants/%' AND ` + RejectedAudit); n != 1 {
			t.Fatalf("%d tenant API records counted as rejected, want 1 (the wrong token's)", n)
		}
	})
}

// A probe whose path is not UTF-8 (/%FF), or whose recorded text is cut in
// the middle of a character, still leaves its audit record: PostgreSQL
// refuses a text value that is not valid UTF-8, and the record was lost.
func TestAuditRecordOfNonUTF8Path(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		for _, path := range []string{"/wp-%FF%FE.php", "/" + strings.Repeat("%E6%B5%8B", 30), "/etc%00passwd"} {
			resp, err := http.Get(e.srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE source = 'http'`); n != 3 {
			t.Fatalf("%d audit records of the three probes, want 3", n)
		}
	})
}
