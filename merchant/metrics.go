package merchant

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

type metrics struct {
	requests    *prometheus.CounterVec   // activity, code
	latency     *prometheus.HistogramVec // activity
	variants    *prometheus.CounterVec   // variant: timestamp_*, key_N, signature_<case>, productInfo_<form>, kg.DecodeRequestVariants's names
	apiCalls    *prometheus.CounterVec   // route, status
	created     prometheus.Counter
	handoffs    *prometheus.CounterVec // type, outcome
	swept       prometheus.Counter     // events whose lease ran out with no outcome (handoff.Sweep)
	queryOrders *prometheus.CounterVec // outcome
	usage       *prometheus.CounterVec // outcome
}

func newMetrics(reg *prometheus.Registry, m *Merchant) *metrics {
	x := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "souk_merchant_requests_total",
			Help: "Basic-interface requests by activity and result code."}, []string{"activity", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "souk_merchant_request_duration_seconds",
			Help:    "Basic-interface request latency by activity.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 3, 4, 5}}, []string{"activity"}),
		variants: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "souk_merchant_signature_variants_total",
			Help: "Accepted protocol variants (README policy 7): verified request signatures (timestamp unit, key index, hex case), the form of changeInstanceCheck's productInfo, and the readings of the request body (testFlag sent or not, member name case, numbers for strings, expireTime digits, status case)."}, []string{"variant"}),
		apiCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "souk_merchant_api_requests_total",
			Help: "Management API requests by route and HTTP status."}, []string{"route", "status"}),
		created: prometheus.NewCounter(prometheus.CounterOpts{Name: "souk_merchant_instances_created_total",
			Help: "Instances created (not counting idempotent retries)."}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "souk_merchant_handoff_attempts_total",
			Help: "Hand-off delivery attempts by event type and outcome (delivered, failed, dead)."}, []string{"type", "outcome"}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: "souk_merchant_handoff_swept_total",
			Help: "Hand-off events whose inline attempt ended with no outcome recorded (a crash), queued for their job by the sweep."}),
		queryOrders: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "souk_merchant_query_order_total",
			Help: "Query Order calls by outcome."}, []string{"outcome"}),
		usage: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "souk_merchant_usage_pushed_records_total",
			Help: "Usage records pushed to the marketplace by outcome (ok, rejected, retry, error)."}, []string{"outcome"}),
	}
	backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "souk_merchant_handoff_backlog",
		Help: "Hand-off events not yet delivered."}, func() float64 { return m.countEvents(handoff.StatePending) })
	dead := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "souk_merchant_handoff_dead",
		Help: "Hand-off events in the dead letter."}, func() float64 { return m.countEvents(handoff.StateDead) })
	offset := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "souk_merchant_database_clock_offset_seconds",
		Help: "The PostgreSQL server's clock minus this process's, measured every minute (0 on SQLite). Replicas' clocks must agree within a few seconds."},
		func() float64 { return time.Duration(m.clockOffset.Load()).Seconds() })
	reg.MustRegister(x.requests, x.latency, x.variants, x.apiCalls, x.created, x.handoffs, x.swept, x.queryOrders, x.usage, backlog, dead, offset,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return x
}

// metricCode is the code label of souk_merchant_requests_total: a
// documented SaaS code or a refusal code (0001xx), else "other", so the
// label's values stay bounded whatever code an answer carries.
func metricCode(code string) string {
	if _, ok := kg.CodeMessage(code); ok || refusalCode(code) {
		return code
	}
	return "other"
}

func (m *Merchant) countEvents(state string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var n int64
	if err := m.db.QueryRow(ctx, `SELECT COUNT(*) FROM handoff_events WHERE state = $1`, state).Scan(&n); err != nil {
		return -1
	}
	return float64(n)
}

func (x *metrics) handoffResult(ev *handoff.Stored, err error, dead bool) {
	outcome := "delivered"
	switch {
	case dead:
		outcome = "dead"
	case err != nil:
		outcome = "failed"
	}
	x.handoffs.WithLabelValues(ev.Type, outcome).Inc()
}

func (x *metrics) queryOrder(err error) {
	if err != nil {
		x.queryOrders.WithLabelValues("error").Inc()
		return
	}
	x.queryOrders.WithLabelValues("ok").Inc()
}

func (x *metrics) usagePush(outcome string, n int) {
	x.usage.WithLabelValues(outcome).Add(float64(n))
}
