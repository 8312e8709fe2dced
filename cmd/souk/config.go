package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/internal/redact"
)

// Settings binds a subcommand's options to flags and to SOUK_* environment
// variables. Precedence: flag, then environment (SOUK_NAME, or for secrets the
// file named by SOUK_NAME_FILE), then the default. Print shows the result with
// every secret masked, so that an operator sees at start what is in force.
type Settings struct {
	FlagSet *flag.FlagSet
	// Args follows "[options]" in the usage line: the command's arguments
	// (" ID..." for events replay).
	Args   string
	getenv func(string) string
	opts   []*option
	errs   []error
}

type option struct {
	name   string
	env    string
	secret bool
	show   func(string) string // how Print shows the value (nil: as it is)
	source string
	value  flag.Value
}

// NewSettings returns settings for the subcommand name; usage goes to stderr.
func (a *App) NewSettings(name string) *Settings {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	s := &Settings{FlagSet: fs, getenv: a.Getenv}
	fs.Usage = func() {
		fmt.Fprintf(a.Stderr, "Usage: souk %s [options]%s\n\nOptions (each also settable by the environment variable shown):\n", name, s.Args)
		for _, o := range s.opts {
			f := fs.Lookup(o.name)
			env := o.env
			if o.secret {
				env += " or " + o.env + "_FILE"
			}
			def := ""
			if f.DefValue != "" && !o.secret {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(a.Stderr, "  --%s  [%s]%s\n      %s\n", o.name, env, def, f.Usage)
		}
		// Flags of the command itself (declared on FlagSet, no variable).
		declared := map[string]bool{}
		for _, o := range s.opts {
			declared[o.name] = true
		}
		first := true
		fs.VisitAll(func(f *flag.Flag) {
			if declared[f.Name] {
				return
			}
			if first {
				fmt.Fprintf(a.Stderr, "\nCommand options:\n")
				first = false
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(a.Stderr, "  --%s%s\n      %s\n", f.Name, def, f.Usage)
		})
	}
	return s
}

// EnvName is the environment variable of an option: SOUK_ + upper-case name, '-' → '_'.
func EnvName(name string) string {
	return "SOUK_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (s *Settings) add(name, usage string, secret bool, v flag.Value) {
	o := &option{name: name, env: EnvName(name), secret: secret, source: "default", value: v}
	s.FlagSet.Var(v, name, usage)
	if env := s.getenv(o.env); env != "" {
		if err := v.Set(env); err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s: %w", o.env, err))
		}
		o.source = "env " + o.env
	} else if secret {
		if path := s.getenv(o.env + "_FILE"); path != "" {
			b, err := readSecretFile(path)
			if err != nil {
				s.errs = append(s.errs, fmt.Errorf("%s_FILE: %w", o.env, err))
			} else if err := v.Set(strings.TrimSpace(string(b))); err != nil {
				s.errs = append(s.errs, fmt.Errorf("%s_FILE: %w", o.env, err))
			}
			o.source = "file " + o.env + "_FILE"
		}
	}
	s.opts = append(s.opts, o)
}

// readSecretFile reads a secret and refuses files that others may read.
func readSecretFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	return os.ReadFile(path)
}

// String declares a string option.
func (s *Settings) String(p *string, name, def, usage string) {
	*p = def
	s.add(name, usage, false, (*stringValue)(p))
}

// URL declares a URL option: printed with its password and secret-looking
// query parameters masked (redact.URL).
func (s *Settings) URL(p *string, name, def, usage string) {
	s.String(p, name, def, usage)
	s.opts[len(s.opts)-1].show = redact.URL
}

// DSN declares a database option given on the command line or in the
// environment: printed with its password masked (db.Redact).
func (s *Settings) DSN(p *string, name, def, usage string) {
	s.String(p, name, def, usage)
	s.opts[len(s.opts)-1].show = db.Redact
}

// Secret declares a secret string option: never printed, also read from SOUK_NAME_FILE.
func (s *Settings) Secret(p *string, name, usage string) {
	s.add(name, usage, true, (*stringValue)(p))
}

// SecretShown declares a secret option (also read from SOUK_NAME_FILE, never
// logged as given) that Print shows through show, which must mask what is
// secret in it: a DSN with its password hidden (db.Redact) says more than
// "(set)".
func (s *Settings) SecretShown(p *string, name, usage string, show func(string) string) {
	s.Secret(p, name, usage)
	s.opts[len(s.opts)-1].show = func(v string) string {
		if v == "" {
			return Mask(v)
		}
		return show(v)
	}
}

// Int declares an integer option.
func (s *Settings) Int(p *int, name string, def int, usage string) {
	*p = def
	s.add(name, usage, false, (*intValue)(p))
}

// Bool declares a boolean option.
func (s *Settings) Bool(p *bool, name string, def bool, usage string) {
	*p = def
	s.add(name, usage, false, (*boolValue)(p))
}

// Duration declares a duration option (Go syntax: 90s, 15m, 360h).
func (s *Settings) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	s.add(name, usage, false, (*durationValue)(p))
}

// Parse parses the flags after the environment has been applied.
func (s *Settings) Parse(args []string) error {
	if len(s.errs) > 0 {
		return errors.Join(s.errs...)
	}
	if err := s.FlagSet.Parse(args); err != nil {
		return err
	}
	s.FlagSet.Visit(func(f *flag.Flag) {
		for _, o := range s.opts {
			if o.name == f.Name {
				o.source = "flag --" + f.Name
			}
		}
	})
	return nil
}

// Print writes the configuration in force, secrets masked, one option a line.
func (s *Settings) Print(w io.Writer) {
	opts := append([]*option(nil), s.opts...)
	sort.Slice(opts, func(i, j int) bool { return opts[i].name < opts[j].name })
	width := 0
	for _, o := range opts {
		width = max(width, len(o.name))
	}
	for _, o := range opts {
		v := o.value.String()
		switch {
		case o.show != nil: // a secret with a redactor too (a DSN: its password masked)
			v = o.show(v)
		case o.secret:
			v = Mask(v)
		}
		fmt.Fprintf(w, "  %-*s = %-40s (%s)\n", width, o.name, v, o.source)
	}
}

// Mask hides a secret: it says only whether one is set.
func Mask(v string) string {
	if v == "" {
		return "(unset)"
	}
	return "****** (set)"
}

// Logger builds the structured logger for a level ("debug", "info", "warn",
// "error") and a format ("json" or "text").
func (a *App) Logger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	// The handler takes every record; startupHandler filters by level, but
	// for the records of announce.
	opts := &slog.HandlerOptions{Level: min(l, slog.LevelInfo)}
	switch strings.ToLower(format) { // as the level: WARN and warn, TEXT and text
	case "json", "":
		return slog.New(startupHandler{slog.NewJSONHandler(a.Stderr, opts), l}), nil
	case "text":
		return slog.New(startupHandler{slog.NewTextHandler(a.Stderr, opts), l}), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}

// announceKey marks the context of a startup line.
type announceKey struct{}

// announce logs a line an operator needs whatever the log level: where a
// server listens. With --log-level warn or error it is still written, at
// level INFO, in the configured format.
func announce(ctx context.Context, log *slog.Logger, msg string, args ...any) {
	log.InfoContext(context.WithValue(ctx, announceKey{}, true), msg, args...)
}

// startupHandler passes records at level and above, and announce's.
type startupHandler struct {
	slog.Handler
	level slog.Level
}

func (h startupHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if l >= h.level {
		return true
	}
	on, _ := ctx.Value(announceKey{}).(bool)
	return on && l == slog.LevelInfo
}

func (h startupHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return startupHandler{h.Handler.WithAttrs(attrs), h.level}
}

func (h startupHandler) WithGroup(name string) slog.Handler {
	return startupHandler{h.Handler.WithGroup(name), h.level}
}

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("not an integer: %q", s)
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("not a boolean: %q", s)
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration: %q", s)
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string { return time.Duration(*v).String() }
