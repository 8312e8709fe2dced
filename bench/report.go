package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// WriteMarkdown writes the report as a Markdown table: one row per cell,
// with the ratio of the merchant's throughput to the floor's at the same
// concurrency.
func (r *Report) WriteMarkdown(w io.Writer) {
	floor := map[int]float64{}
	for _, x := range r.Results {
		if x.Scenario == ScenarioFloor {
			floor[x.Clients] = x.Throughput
		}
	}
	fmt.Fprintf(w, "Backend **%s**, %d CPUs (%s), %s, %s per cell.\n\n", r.Backend, r.Machine.CPUs, r.Machine.Model, r.Machine.Go, r.Duration)
	fmt.Fprintln(w, "| scenario | clients | requests | errors | req/s | × floor | p50 ms | p99 ms | max ms | CPU µs/req | result codes |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	for _, x := range r.Results {
		ratio := "—"
		if f := floor[x.Clients]; f > 0 && x.Scenario != ScenarioFloor {
			ratio = fmt.Sprintf("%.2f", x.Throughput/f)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.0f | %s | %.1f | %.1f | %.1f | %d | %s |\n", x.Scenario, x.Clients, x.Requests, x.Errors,
			x.Throughput, ratio, msf(x.P50.Microseconds()), msf(x.P99.Microseconds()), msf(x.Max.Microseconds()), x.CPUPerRequest.Microseconds(), codes(x.Codes))
	}
	v := r.Verify
	if v.Checked {
		fmt.Fprintf(w, "\nStore after the run: %d orders sent (create + dup), %d instances, %d orders with more than one instance, "+
			"%d instance.created events", v.Orders, v.Instances, v.DuplicateOrders, v.CreatedEvents)
		if v.Provisioned > 0 {
			fmt.Fprintf(w, ", %d provisioner calls", v.Provisioned)
		}
		fmt.Fprintln(w, ".")
	}
	for _, x := range r.Results {
		if x.FirstError != "" {
			fmt.Fprintf(w, "\nfirst error in %s/%d: %s\n", x.Scenario, x.Clients, x.FirstError)
		}
		if x.Mismatch > 0 {
			fmt.Fprintf(w, "\n%s/%d: %d answers named another instanceId than an earlier answer for the same order\n", x.Scenario, x.Clients, x.Mismatch)
		}
	}
}

func msf(us int64) float64 { return float64(us) / 1000 }

func codes(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
