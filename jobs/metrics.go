package jobs

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/soukhq/souk/db"
)

// Metrics records job runs in Prometheus:
//
//	souk_jobs_runs_total{kind,outcome}
//	souk_jobs_run_seconds{kind}            handler duration histogram
//	souk_jobs{state}                       jobs by state, read at scrape time
//
// Wire it with Runner{Observe: m.Observe}.
type Metrics struct {
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the run metrics, and the queue-depth gauge of d if d is
// not nil, on reg.
func NewMetrics(reg prometheus.Registerer, d *db.DB) (*Metrics, error) {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "souk_jobs_runs_total", Help: "Job runs by kind and outcome.",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "souk_jobs_run_seconds", Help: "Job handler duration.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"kind"}),
	}
	cs := []prometheus.Collector{m.runs, m.duration}
	if d != nil {
		cs = append(cs, &queueCollector{d: d, desc: prometheus.NewDesc("souk_jobs", "Jobs by state.", []string{"state"}, nil)})
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Observe is a Runner.Observe function.
func (m *Metrics) Observe(j *Job, outcome string, took time.Duration, _ error) {
	m.runs.WithLabelValues(j.Kind, outcome).Inc()
	m.duration.WithLabelValues(j.Kind).Observe(took.Seconds())
}

type queueCollector struct {
	d    *db.DB
	desc *prometheus.Desc
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- q.desc }

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := Counts(ctx, q.d)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(q.desc, err)
		return
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(q.desc, prometheus.GaugeValue, float64(n), state)
	}
}
