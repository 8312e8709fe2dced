package jobs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/jobs"
)

func TestMetrics(t *testing.T) {
	d := setup(t, "sqlite")
	reg := prometheus.NewRegistry()
	m, err := jobs.NewMetrics(reg, d)
	if err != nil {
		t.Fatal(err)
	}
	v := clock.NewVirtual(t0)
	r := &jobs.Runner{DB: d, Clock: v, Observe: m.Observe, Handlers: map[string]jobs.Handler{
		"ok":  func(context.Context, *jobs.Job) error { return nil },
		"bad": func(context.Context, *jobs.Job) error { return jobs.Permanent(errors.New("x")) },
		"flk": func(context.Context, *jobs.Job) error { return errors.New("y") },
	}}
	for _, k := range []string{"ok", "ok", "bad", "flk"} {
		enqueue(t, d, v.Now(), jobs.New{Kind: k})
	}
	enqueue(t, d, v.Now(), jobs.New{Kind: "ok", DueAt: t0.Add(time.Hour)})
	runDue(t, r)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"souk_jobs{state=dead}":                        1,
		"souk_jobs{state=done}":                        2,
		"souk_jobs{state=pending}":                     2,
		"souk_jobs_runs_total{kind=bad,outcome=dead}":  1,
		"souk_jobs_runs_total{kind=flk,outcome=retry}": 1,
		"souk_jobs_runs_total{kind=ok,outcome=done}":   2,
		"souk_jobs_run_seconds{kind=ok}":               2,
		"souk_jobs_run_seconds{kind=bad}":              1,
		"souk_jobs_run_seconds{kind=flk}":              1,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("metrics = %v", got)
	}
}
