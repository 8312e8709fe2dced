package check

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"
)

// Info describes one check of the suite.
type Info struct {
	ID        string   `json:"id"`
	Family    string   `json:"family"`
	Title     string   `json:"title"`
	Mandatory bool     `json:"mandatory"`         // false: a deviation is only a warning
	Ref       string   `json:"ref"`               // where in docs/koogallery the rule is written
	Modes     []string `json:"modes,omitempty"`   // charging modes it applies to (all when empty)
	Feature   string   `json:"feature,omitempty"` // optional interface it needs ("" = always)
}

type checkDef struct {
	Info
	run func(ctx context.Context, s *session, t *T)
}

// Checks lists every check of the suite, in the order Run executes them.
func Checks() []Info {
	defs := suite()
	out := make([]Info, len(defs))
	for i, d := range defs {
		out[i] = d.Info
	}
	return out
}

func (d *checkDef) applies(cfg *Config) bool {
	if len(d.Modes) > 0 && !slices.Contains(d.Modes, cfg.Mode) {
		return false
	}
	switch d.Feature {
	case FeatureUpgrade:
		if !cfg.Upgrade {
			return false
		}
	case FeatureChangeCheck:
		if !cfg.ChangeCheck {
			return false
		}
	case FeatureOrderNotify:
		if !cfg.OrderNotify {
			return false
		}
	}
	if len(cfg.Only) > 0 {
		ok := false
		for _, p := range cfg.Only {
			if strings.HasPrefix(d.ID, p) {
				ok = true
			}
		}
		// The answer checks judge whatever was sent; keep them.
		if !ok && d.Family != FamilyAnswers {
			return false
		}
	}
	return true
}

// T collects the findings of one check.
type T struct {
	res     *Result
	skipped bool
}

// fail records a contract violation (a warning when the check is optional).
func (t *T) fail(f Finding) {
	f.Severity = Fail
	if !t.res.Mandatory {
		f.Severity = Warn
	}
	if f.Ref == "" {
		f.Ref = t.res.Ref
	}
	t.res.Findings = append(t.res.Findings, f)
}

// warn records a deviation from an unconfirmed or inferred rule.
func (t *T) warn(f Finding) {
	f.Severity = Warn
	if f.Ref == "" {
		f.Ref = t.res.Ref
	}
	t.res.Findings = append(t.res.Findings, f)
}

func (t *T) note(format string, args ...any) {
	t.res.Notes = append(t.res.Notes, fmt.Sprintf(format, args...))
}

func (t *T) skip(format string, args ...any) {
	t.skipped = true
	t.res.Message = fmt.Sprintf(format, args...)
}

func (t *T) failed() bool {
	for _, f := range t.res.Findings {
		if f.Severity == Fail {
			return true
		}
	}
	return false
}

// Run executes every check that applies to cfg against cfg.Target and
// returns the report. It never returns an error: a configuration problem is
// reported in Report.SetupError (and Passed is false).
func Run(ctx context.Context, cfg Config) Report {
	started := time.Now()
	if err := cfg.normalize(); err != nil {
		return Report{Target: cfg.Target, Mode: cfg.Mode, Started: started, SetupError: err.Error(), Counts: map[Status]int{}}
	}
	rep := Report{Target: cfg.Target, Mode: cfg.Mode, Started: cfg.Clock.Now(), Counts: map[Status]int{}}
	for _, f := range []struct {
		on   bool
		name string
	}{{cfg.Upgrade, FeatureUpgrade}, {cfg.ChangeCheck, FeatureChangeCheck}, {cfg.OrderNotify, FeatureOrderNotify}} {
		if f.on {
			rep.Features = append(rep.Features, f.name)
		}
	}
	s := newSession(&cfg)
	for _, d := range suite() {
		if !d.applies(&cfg) {
			continue
		}
		res := Result{ID: d.ID, Family: d.Family, Title: d.Title, Mandatory: d.Mandatory, Ref: d.Ref}
		if cfg.Progress != nil {
			cfg.Progress(res, false)
		}
		t := &T{res: &res}
		begin := time.Now()
		if ctx.Err() != nil {
			t.skip("run cancelled: %v", ctx.Err())
		} else if s.c.unreachable() && d.Family != FamilyAnswers {
			t.skip("not run: the target stopped answering (%d consecutive calls without an HTTP answer)", unreachableAfter)
		} else {
			runOne(ctx, s, &d, t)
		}
		res.Duration = time.Since(begin)
		switch {
		case t.failed():
			res.Status = Fail
		case len(res.Findings) > 0:
			res.Status = Warn
		case t.skipped:
			res.Status = Skip
		default:
			res.Status = Pass
		}
		if res.Message == "" {
			res.Message = summary(&res)
		}
		cfg.Logger.DebugContext(ctx, "check done", "id", res.ID, "status", res.Status)
		if cfg.Progress != nil {
			cfg.Progress(res, true)
		}
		rep.Results = append(rep.Results, res)
		rep.Counts[res.Status]++
	}
	rep.Latency = latencyOf(s.c.all(), cfg.Timeout)
	rep.Duration = time.Since(started)
	rep.Passed = rep.Counts[Fail] == 0 && len(rep.Results) > 0
	return rep
}

func runOne(ctx context.Context, s *session, d *checkDef, t *T) {
	defer func() {
		if p := recover(); p != nil {
			t.fail(Finding{What: fmt.Sprintf("the check itself crashed: %v\n%s", p, debug.Stack())})
		}
	}()
	d.run(ctx, s, t)
}

func summary(r *Result) string {
	switch r.Status {
	case Pass:
		return "ok"
	case Skip:
		return "skipped"
	}
	first := r.Findings[0].What
	if n := len(r.Findings); n > 1 {
		return fmt.Sprintf("%s (and %d more)", first, n-1)
	}
	return first
}

func latencyOf(xs []*exchange, timeout time.Duration) Latency {
	var l Latency
	var ds []time.Duration
	for _, x := range xs {
		ds = append(ds, x.Latency)
		if x.TimedOut || x.Latency > timeout {
			l.Slow++
		}
	}
	l.Calls = len(ds)
	if len(ds) == 0 {
		return l
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	l.P50 = ds[len(ds)/2]
	l.P95 = ds[(len(ds)*95)/100]
	if idx := (len(ds) * 95) / 100; idx >= len(ds) {
		l.P95 = ds[len(ds)-1]
	}
	l.Max = ds[len(ds)-1]
	return l
}
