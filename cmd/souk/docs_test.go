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
	for _, args := range [][]string{
		{"merchant", "-h"}, {"merchant", "public-key", "-h"}, {"merchant", "backup", "-h"}, {"market", "serve", "-h"}, {"demo", "-h"}, {"check", "-h"}, {"bench", "-h"},
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
	}
}
