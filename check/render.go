package check

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// ProgressLine formats one finished check as a single line of the text report.
func ProgressLine(r Result) string {
	tag := string(r.Status)
	if r.Status == Warn {
		tag = "WARN"
	}
	mand := " "
	if !r.Mandatory {
		mand = "~" // optional rule: can only warn
	}
	line := fmt.Sprintf("%-4s %s %-44s %s", tag, mand, r.ID, r.Title)
	if r.Status != Pass && r.Message != "" && r.Message != "skipped" {
		line += "\n         → " + escapeControls(r.Message)
	}
	return line + "  (" + fmtDur(r.Duration) + ")"
}

// Header is the first line of the text report.
func Header(target, mode string, features []string) string {
	h := fmt.Sprintf("souk check: %s  (charging mode %s", target, mode)
	if len(features) > 0 {
		h += "; optional interfaces: " + strings.Join(features, ", ")
	}
	return h + ")"
}

// fmtDur rounds a duration for display.
func fmtDur(d time.Duration) string {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// WriteText writes the human-readable report. With lines set it lists every
// check first (without it, only the details and the summary: the lines were
// already shown as progress).
func WriteText(w io.Writer, rep Report, lines bool) error {
	ew := &errWriter{w: w}
	if lines || rep.SetupError != "" {
		ew.printf("%s\n", Header(rep.Target, rep.Mode, rep.Features))
	}
	if rep.SetupError != "" {
		ew.printf("\nsetup error: %s\n", rep.SetupError)
		return ew.err
	}
	if lines {
		family := ""
		for _, r := range rep.Results {
			if r.Family != family {
				family = r.Family
				ew.printf("\n%s\n", family)
			}
			ew.printf("  %s\n", ProgressLine(r))
		}
	}
	var detailed []Result
	for _, r := range rep.Results {
		if len(r.Findings) > 0 {
			detailed = append(detailed, r)
		}
	}
	if len(detailed) > 0 {
		ew.printf("\nDetails\n")
		for _, r := range detailed {
			ew.printf("\n%s %s — %s\n", r.Status, r.ID, r.Title)
			if !r.Mandatory {
				ew.printf("  (the documentation is silent or unconfirmed here: a deviation is a warning, not a failure)\n")
			}
			for i, f := range r.Findings {
				ew.printf("  [%d] %s: %s\n", i+1, f.Severity, escapeControls(f.What))
				writeField(ew, "sent", f.Sent)
				writeField(ew, "got", f.Got)
				writeField(ew, "want", f.Want)
				writeField(ew, "rule", f.Ref+" (in docs/koogallery)")
			}
			for _, n := range r.Notes {
				ew.printf("      note: %s\n", escapeControls(n))
			}
		}
	}
	ew.printf("\nLatency: %d calls, p50 %v, p95 %v, max %v, %d over the timeout\n",
		rep.Latency.Calls, fmtDur(rep.Latency.P50), fmtDur(rep.Latency.P95), fmtDur(rep.Latency.Max), rep.Latency.Slow)
	verdict := "PASS"
	if !rep.Passed {
		verdict = "FAIL"
	}
	ew.printf("Result: %s — %d passed, %d failed, %d warnings, %d skipped (%d checks in %s)\n",
		verdict, rep.Counts[Pass], rep.Counts[Fail], rep.Counts[Warn], rep.Counts[Skip], len(rep.Results), fmtDur(rep.Duration))
	return ew.err
}

func writeField(ew *errWriter, name, v string) {
	if v == "" {
		return
	}
	v = strings.ReplaceAll(escapeControls(v), "\n", "\n            ")
	ew.printf("      %-5s %s\n", name+":", v)
}

// escapeControls makes merchant-controlled text safe for a terminal: control
// characters (ESC, CR, BEL, C1…) other than newline, and the bidirectional
// overrides, are written as Go escapes (\x1b, \u202e), so an answer can
// neither move the cursor, rewrite earlier lines nor reorder the text.
func escapeControls(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\n':
			b.WriteByte('\n')
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, "\\x%02x", r)
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x2028, r == 0x2029:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err != nil {
		return
	}
	_, e.err = fmt.Fprintf(e.w, format, args...)
}

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("check: write JSON report: %w", err)
	}
	return nil
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Name    string       `xml:"name,attr"`
	Tests   int          `xml:"tests,attr"`
	Fails   int          `xml:"failures,attr"`
	Skipped int          `xml:"skipped,attr"`
	Time    string       `xml:"time,attr"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name    string      `xml:"name,attr"`
	Tests   int         `xml:"tests,attr"`
	Fails   int         `xml:"failures,attr"`
	Errors  int         `xml:"errors,attr"`
	Skipped int         `xml:"skipped,attr"`
	Time    string      `xml:"time,attr"`
	Cases   []junitCase `xml:"testcase"`
}

type junitCase struct {
	Class     string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",chardata"`
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes the report as JUnit XML: one test suite per family, one
// test case per check. Warnings are not failures; they appear in system-out.
func WriteJUnit(w io.Writer, rep Report) error {
	out := junitSuites{Name: "souk check " + rep.Target, Time: seconds(rep.Duration)}
	idx := map[string]int{}
	for _, r := range rep.Results {
		i, ok := idx[r.Family]
		if !ok {
			i = len(out.Suites)
			idx[r.Family] = i
			out.Suites = append(out.Suites, junitSuite{Name: r.Family})
		}
		s := &out.Suites[i]
		c := junitCase{Class: "souk.check." + r.Family, Name: r.ID + ": " + r.Title, Time: seconds(r.Duration)}
		var body strings.Builder
		for _, f := range r.Findings {
			fmt.Fprintf(&body, "%s: %s\n  sent: %s\n  got:  %s\n  want: %s\n  rule: %s\n", f.Severity, f.What, f.Sent, f.Got, f.Want, f.Ref)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(&body, "note: %s\n", n)
		}
		switch r.Status {
		case Fail:
			c.Failure = &junitMessage{Message: r.Message, Type: "contract", Body: body.String()}
			s.Fails++
			out.Fails++
		case Skip:
			c.Skipped = &junitMessage{Message: r.Message}
			s.Skipped++
			out.Skipped++
		case Warn:
			c.SystemOut = "WARNING (not a failure: the documentation is silent or unconfirmed)\n" + body.String()
		default:
			c.SystemOut = body.String()
		}
		s.Tests++
		out.Tests++
		s.Time = seconds(parseSeconds(s.Time) + r.Duration)
		s.Cases = append(s.Cases, c)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("check: write JUnit report: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("check: write JUnit report: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("check: write JUnit report: %w", err)
	}
	return nil
}

func parseSeconds(s string) time.Duration {
	var f float64
	if _, err := fmt.Sscanf(s, "%f", &f); err != nil {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}
