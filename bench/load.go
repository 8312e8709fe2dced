package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/soukhq/souk/kg"
)

// Scenarios of a run.
const (
	ScenarioFloor  = "floor"  // minimal handler: verify the signature, insert one row in its own transaction
	ScenarioCreate = "create" // newInstance, every request a distinct order
	ScenarioDup    = "dup"    // newInstance storms: StormSize deliveries (distinct businessIds) per order
	ScenarioQuery  = "query"  // queryInstance of instances created by the create scenario
	// ScenarioNoDB is a create's work without a database, on the same HTTP
	// stack: verify the signature, ask the fake market's Query Order
	// (APIG-signed), answer. No create can be faster on the machine: it
	// bounds what any storage design could reach (docs/performance.md).
	ScenarioNoDB = "nodb"
)

// Result is one cell of the report: a scenario at one concurrency.
type Result struct {
	Backend    string         `json:"backend"`
	Scenario   string         `json:"scenario"`
	Clients    int            `json:"clients"`
	Requests   int            `json:"requests"`
	Errors     int            `json:"errors"`
	Codes      map[string]int `json:"codes"` // resultCode → count ("http" / "transport" for failures below the protocol)
	Seconds    float64        `json:"seconds"`
	Throughput float64        `json:"throughput"` // requests/s
	P50        time.Duration  `json:"p50"`
	P99        time.Duration  `json:"p99"`
	Max        time.Duration  `json:"max"`
	// Orders is the number of distinct orders sent (create and dup).
	Orders int `json:"orders,omitempty"`
	// Mismatch counts answers naming a different instanceId than an earlier
	// answer for the same order (a duplicate seen from the client's side).
	Mismatch int `json:"mismatch,omitempty"`
	// CPUPerRequest is the CPU time (user + system) this process spent per
	// request during the cell: client, in-process servers and, on SQLite,
	// the database (a PostgreSQL server's own CPU is not included). Less
	// sensitive than throughput to other load on the machine.
	CPUPerRequest time.Duration `json:"cpuPerRequest"`
	// FirstError describes the first failed request, if any.
	FirstError string `json:"firstError,omitempty"`
}

// client sends signed basic-interface calls.
type client struct {
	base string // production address
	key  string
	http *http.Client
}

func newHTTPClient(conns int) *http.Client {
	t := &http.Transport{
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

type answer struct {
	ResultCode string `json:"resultCode"`
	InstanceID string `json:"instanceId"`
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// call POSTs body to the production address, signed now with a fresh nonce.
func (c *client) call(ctx context.Context, body []byte) (answer, error) {
	u, err := kg.SignedURL(c.base, c.key, body, time.Now(), randHex(32))
	if err != nil {
		return answer{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{ResultCode: "transport"}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return answer{ResultCode: "transport"}, err
	}
	if resp.StatusCode != http.StatusOK {
		return answer{ResultCode: "http"}, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, raw)
	}
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		return answer{ResultCode: "json"}, fmt.Errorf("answer: %w", err)
	}
	return a, nil
}

// cell runs one scenario at one concurrency for d and measures it. next
// returns the i-th request's body and the order it concerns ("" if none);
// ok says whether a resultCode counts as success.
type cellSpec struct {
	clients int
	d       time.Duration
	next    func(i int64) (body []byte, order string)
	ok      func(code string) bool
}

func runCell(ctx context.Context, c *client, spec cellSpec) Result {
	var (
		seq      atomic.Int64
		mu       sync.Mutex
		lats     []time.Duration
		codes    = map[string]int{}
		errs     int
		orders   = map[string]string{} // order → first instanceId answered
		mismatch int
		firstErr error
	)
	cpu0 := processCPU()
	start := time.Now()
	deadline := start.Add(spec.d)
	var wg sync.WaitGroup
	for w := 0; w < spec.clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			localCodes := map[string]int{}
			localErrs := 0
			type seen struct{ order, id string }
			var localSeen []seen
			var lerr error
			for ctx.Err() == nil && time.Now().Before(deadline) {
				body, order := spec.next(seq.Add(1) - 1)
				t0 := time.Now()
				a, err := c.call(ctx, body)
				lat := time.Since(t0)
				local = append(local, lat)
				localCodes[a.ResultCode]++
				if err != nil || !spec.ok(a.ResultCode) {
					localErrs++
					if lerr == nil {
						if err == nil {
							err = fmt.Errorf("resultCode %s", a.ResultCode)
						}
						lerr = err
					}
				}
				if order != "" {
					localSeen = append(localSeen, seen{order, a.InstanceID})
				}
			}
			mu.Lock()
			defer mu.Unlock()
			lats = append(lats, local...)
			for k, v := range localCodes {
				codes[k] += v
			}
			errs += localErrs
			if firstErr == nil {
				firstErr = lerr
			}
			for _, s := range localSeen {
				prev, ok := orders[s.order]
				switch {
				case !ok || prev == "":
					orders[s.order] = s.id
				case s.id != "" && s.id != prev:
					mismatch++
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	cpu := processCPU() - cpu0
	r := Result{Clients: spec.clients, Requests: len(lats), Errors: errs, Codes: codes, Seconds: el.Seconds(), Orders: len(orders), Mismatch: mismatch}
	if el > 0 {
		r.Throughput = float64(len(lats)) / el.Seconds()
	}
	if len(lats) > 0 && cpu > 0 {
		r.CPUPerRequest = cpu / time.Duration(len(lats))
	}
	slices.Sort(lats)
	if n := len(lats); n > 0 {
		r.P50 = lats[n/2]
		r.P99 = lats[max(0, (n*99+99)/100-1)]
		r.Max = lats[n-1]
	}
	if firstErr != nil {
		r.FirstError = firstErr.Error()
	}
	return r
}

// processCPU is this process's user + system CPU time so far (0 where
// getrusage is unavailable).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
