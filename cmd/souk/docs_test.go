package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestCommandsDocumented keeps docs/commands.md true: every option that a
// command's help lists must be documented there (regenerate the page with
// scripts/gen-commands-doc).
func TestCommandsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/commands.md")
	if err != nil {
		t.Fatal(err)
	}
	opt := regexp.MustCompile(`(?m)^\s+(--[a-z0-9-]+)\s+\[(SOUK_[A-Z0-9_]+)`)
	ownOpt := regexp.MustCompile(`(?m)^  (--[a-z0-9-]+)`)
	for _, args := range [][]string{
		{"merchant", "-h"}, {"merchant", "public-key", "-h"}, {"merchant", "backup", "-h"},
		{"merchant", "events", "list", "-h"}, {"merchant", "events", "replay", "-h"}, {"market", "serve", "-h"}, {"demo", "-h"}, {"check", "-h"}, {"bench", "-h"},
	} {
		var out, errb bytes.Buffer
		run(args, &out, &errb, func(string) string { return "" })
		help := out.String() + errb.String()
		found := opt.FindAllStringSubmatch(help, -1)
		if len(found) == 0 {
			t.Fatalf("souk %s lists no options:\n%s", strings.Join(args, " "), help)
		}
		for _, m := range found {
			if !bytes.Contains(doc, []byte(m[1]+"  ["+m[2])) {
				t.Errorf("souk %s: option %s [%s] is not in docs/commands.md; run scripts/gen-commands-doc", strings.Join(args[:len(args)-1], " "), m[1], m[2])
			}
		}
		// The command's own options (no variable), e.g. events list --state.
		if _, own, ok := strings.Cut(help, "\nCommand options:\n"); ok {
			section := "$ souk " + strings.Join(args, " ") + "\n"
			i := bytes.Index(doc, []byte(section))
			if i < 0 {
				t.Errorf("docs/commands.md has no section for souk %s; run scripts/gen-commands-doc", strings.Join(args, " "))
				continue
			}
			for _, m := range ownOpt.FindAllStringSubmatch(own, -1) {
				if !bytes.Contains(doc[i:], []byte(m[0])) {
					t.Errorf("souk %s: option %s is not in docs/commands.md; run scripts/gen-commands-doc", strings.Join(args[:len(args)-1], " "), m[1])
				}
			}
		}
	}
}
