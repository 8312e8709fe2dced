package sellertools

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// CLIUsage describes the command groups Command serves.
const CLIUsage = `souk market debug interfaces
souk market debug defaults  -product ID -activity A
souk market debug generate  -product ID -activity A [-param k=v]… [-url U] [-curl]
souk market debug send      -product ID -activity A [-param k=v]… [-url U]
souk market debug save      -product ID -activity A [-param k=v]… [-url U] [-name N]
souk market cases list      [-seller ID] [-product ID] [-activity A]
souk market cases show      CASE-ID
souk market cases delete    CASE-ID
souk market cases readiness -product ID
souk market dialtests list     [-seller ID] [-product ID] [-limit N]
souk market dialtests show     RUN-ID
souk market dialtests run      -product ID
souk market dialtests schedule
souk market dialtests status   [-seller ID] [-product ID]
souk market dialtests history  -product ID [-limit DAYS]
souk market dialtests on-sale  -product ID
souk market dialtests off-sale -product ID [-note TEXT]
souk market dialtests unfreeze -product ID
`

// API is what the seller-tools CLI needs: *Tools in process, or *Client
// against a running market's JSON API.
type API interface {
	Defaults(ctx context.Context, productID, activity string) (map[string]string, error)
	Generate(ctx context.Context, in DebugInput) (Command, error)
	Send(ctx context.Context, in DebugInput) (Result, error)
	DebugAndSave(ctx context.Context, in DebugInput) (Result, error)
	ListCases(ctx context.Context, f CaseFilter) ([]Case, error)
	GetCase(ctx context.Context, id int64) (Case, error)
	DeleteCase(ctx context.Context, id int64) (Case, error)
	Readiness(ctx context.Context, productID string) (Readiness, error)
	Status(ctx context.Context, productID string) (Listing, error)
	ListListings(ctx context.Context, sellerID string) ([]Listing, error)
	PutOnSale(ctx context.Context, productID string) (Listing, error)
	TakeOffSale(ctx context.Context, productID, note string) (Listing, error)
	Unfreeze(ctx context.Context, productID string) (Run, Listing, error)
	RunNow(ctx context.Context, productID string) (Run, error)
	ListRuns(ctx context.Context, f RunFilter) ([]Run, error)
	GetRun(ctx context.Context, id int64) (Run, error)
	History(ctx context.Context, productID string, days int) ([]Day, error)
	Schedule(ctx context.Context) (Schedule, error)
}

// Command runs a seller-tools CLI command in process (RunCLI with t).
func (t *Tools) Command(ctx context.Context, stdout, stderr io.Writer, group string, args []string) int {
	return RunCLI(ctx, t, stdout, stderr, group, args)
}

// RunCLI runs one seller-tools CLI command: group is "debug", "cases" or
// "dialtests" and args the rest of the command line (CLIUsage). It prints
// JSON to stdout (generate -curl prints the curl line) and errors to stderr,
// and returns the exit status: 0 done, 1 failed (an error, a debug call that
// did not pass, a product not ready, a failing dial test), 2 usage.
func RunCLI(ctx context.Context, t API, stdout, stderr io.Writer, group string, args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "usage:\n%s", CLIUsage)
		return 2
	}
	verb, rest := args[0], args[1:]
	fs := flag.NewFlagSet("souk market "+group+" "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	product := fs.String("product", "", "product ID")
	seller := fs.String("seller", "", "seller ID")
	activity := fs.String("activity", "", "interface (activity)")
	rawURL := fs.String("url", "", "address to call (default: the product's production address)")
	name := fs.String("name", "", "case name (default: the activity)")
	note := fs.String("note", "", "note")
	limit := fs.Int("limit", 0, "how many")
	curlOnly := fs.Bool("curl", false, "print only the curl command line")
	params := paramFlag{}
	fs.Var(params, "param", "interface parameter k=v (repeatable; k= leaves it out)")
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	in := DebugInput{ProductID: *product, Activity: *activity, Params: params, URL: *rawURL, Name: *name}
	id := func() (int64, bool) {
		if fs.NArg() != 1 {
			fmt.Fprintf(stderr, "souk market %s %s: want one ID argument\n", group, verb)
			return 0, false
		}
		n, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "souk market %s %s: %q is not a number\n", group, verb, fs.Arg(0))
			return 0, false
		}
		return n, true
	}
	out := func(v any, err error) int {
		if err != nil {
			fmt.Fprintf(stderr, "souk market %s %s: %v\n", group, verb, err)
			return 1
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			fmt.Fprintf(stderr, "souk market %s %s: %v\n", group, verb, err)
			return 1
		}
		return 0
	}
	switch group + " " + verb {
	case "debug interfaces":
		return out(Interfaces(), nil)
	case "debug defaults":
		return out(t.Defaults(ctx, *product, *activity))
	case "debug generate":
		cmd, err := t.Generate(ctx, in)
		if err == nil && *curlOnly {
			fmt.Fprintln(stdout, cmd.Curl)
			return 0
		}
		return out(cmd, err)
	case "debug send", "debug save":
		var r Result
		var err error
		if verb == "send" {
			r, err = t.Send(ctx, in)
		} else {
			r, err = t.DebugAndSave(ctx, in)
		}
		if st := out(r, err); st != 0 {
			return st
		}
		if !r.Passed {
			fmt.Fprintf(stderr, "souk market debug %s: %s did not pass: %s (nothing saved)\n", verb, *activity, r.Error)
			return 1
		}
		return 0
	case "cases list":
		return out(orEmpty(t.ListCases(ctx, CaseFilter{SellerID: *seller, ProductID: *product, Activity: *activity})))
	case "cases show":
		n, ok := id()
		if !ok {
			return 2
		}
		return out(t.GetCase(ctx, n))
	case "cases delete":
		n, ok := id()
		if !ok {
			return 2
		}
		return out(t.DeleteCase(ctx, n))
	case "cases readiness":
		r, err := t.Readiness(ctx, *product)
		if st := out(r, err); st != 0 {
			return st
		}
		if !r.Ready {
			fmt.Fprintf(stderr, "souk market cases readiness: product %s lacks passing cases for %s\n", *product, strings.Join(r.Missing, ", "))
			return 1
		}
		return 0
	case "dialtests list":
		return out(orEmpty(t.ListRuns(ctx, RunFilter{SellerID: *seller, ProductID: *product, Limit: *limit})))
	case "dialtests show":
		n, ok := id()
		if !ok {
			return 2
		}
		return out(t.GetRun(ctx, n))
	case "dialtests run":
		r, err := t.RunNow(ctx, *product)
		if st := out(r, err); st != 0 {
			return st
		}
		if !r.Passed {
			return 1
		}
		return 0
	case "dialtests schedule":
		return out(t.Schedule(ctx))
	case "dialtests status":
		if *product != "" {
			return out(t.Status(ctx, *product))
		}
		return out(orEmpty(t.ListListings(ctx, *seller)))
	case "dialtests history":
		return out(orEmpty(t.History(ctx, *product, *limit)))
	case "dialtests on-sale":
		return out(t.PutOnSale(ctx, *product))
	case "dialtests off-sale":
		return out(t.TakeOffSale(ctx, *product, *note))
	case "dialtests unfreeze":
		run, l, err := t.Unfreeze(ctx, *product)
		if st := out(map[string]any{"run": run, "listing": l}, err); st != 0 {
			return st
		}
		if l.Status != StatusOnSale {
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "souk market %s: unknown command %q\nusage:\n%s", group, verb, CLIUsage)
	return 2
}

// paramFlag collects repeated -param k=v flags.
type paramFlag map[string]string

func (p paramFlag) String() string {
	parts := make([]string, 0, len(p))
	for k, v := range p {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (p paramFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want k=v")
	}
	p[k] = v
	return nil
}
