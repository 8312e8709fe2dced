// Package pythonvendorapp_test checks the Python webhook verifiers, app.py's
// and the one docs/merchant.md shows, against headers signed by souk's own
// handoff.SignAll. It needs python3 (SOUK_TEST_PYTHON names it; without it,
// python3 on PATH) and fails without it; SOUK_TEST_PYTHON=skip skips it.
package pythonvendorapp_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/merchant/handoff"
)

// checker reads the cases as JSON lines on stdin and prints, per case,
// "app,doc" verdicts (True/False, or the exception's name when one raised).
const checker = `
import json, sys, importlib.util
spec = importlib.util.spec_from_file_location("app", "app.py")
app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)
doc = {}; exec(sys.argv[1], doc)
def run(f, *a):
    try: return str(f(*a))
    except Exception as e: return type(e).__name__
for line in sys.stdin:
    c = json.loads(line)
    body = c["body"].encode()
    print(run(app.verify, [b"s3cret"], c["header"], body) + "," + run(doc["verify"], b"s3cret", c["header"], body))
`

func TestPythonVerify(t *testing.T) {
	py := os.Getenv("SOUK_TEST_PYTHON")
	switch py {
	case "skip":
		t.Skip("SOUK_TEST_PYTHON=skip")
	case "":
		var err error
		if py, err = exec.LookPath("python3"); err != nil {
			t.Fatal("python3 not found: install it, point SOUK_TEST_PYTHON at it, or set SOUK_TEST_PYTHON=skip to skip this test on purpose")
		}
	}
	md, err := os.ReadFile("../../docs/merchant.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)Verifying in Python:\n\n```python\n(.*?)```").FindSubmatch(md)
	if m == nil {
		t.Fatal("docs/merchant.md: no Python verifier after \"Verifying in Python:\"")
	}
	now, body := time.Now(), `{"id":"evt_1","type":"instance.created","data":{"memo":"说明"}}`
	cases := []struct {
		name, header, body string
		want               bool
	}{
		{"signed", handoff.Sign("s3cret", now, []byte(body)), body, true},
		{"rotation new,old", handoff.SignAll([]string{"new", "s3cret"}, now, []byte(body)), body, true},
		{"upper-case hex", upperHex(handoff.Sign("s3cret", now, []byte(body))), body, true},
		{"other secret", handoff.Sign("other", now, []byte(body)), body, false},
		{"other body", handoff.Sign("s3cret", now, []byte(body)), body + " ", false},
		// 20 s either side of the 5 min tolerance: python3 starts and checks
		// seconds after now on a loaded CI machine (±1 s failed there).
		{"4m40s old", handoff.Sign("s3cret", now.Add(-280*time.Second), []byte(body)), body, true},
		{"4m40s ahead", handoff.Sign("s3cret", now.Add(280*time.Second), []byte(body)), body, true},
		{"5m20s old", handoff.Sign("s3cret", now.Add(-320*time.Second), []byte(body)), body, false},
		{"5m20s ahead", handoff.Sign("s3cret", now.Add(320*time.Second), []byte(body)), body, false},
		{"no header", "", body, false},
		{"superscript timestamp", "t=²,v1=00", body, false},
		{"non-ASCII v1", "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=é", body, false},
	}
	var in bytes.Buffer
	for _, c := range cases {
		b, _ := json.Marshal(map[string]string{"header": c.header, "body": c.body})
		in.Write(append(b, '\n'))
	}
	cmd := exec.Command(py, "-c", checker, string(m[1]))
	cmd.Stdin = &in
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("%d answers for %d cases:\n%s", len(lines), len(cases), out)
	}
	for i, c := range cases {
		want := "False,False"
		if c.want {
			want = "True,True"
		}
		if lines[i] != want {
			t.Errorf("%s: app.py,docs = %s, want %s", c.name, lines[i], want)
		}
	}
}

// upperHex upper-cases the hex of the v1 entries ("t=1,v1=ab" → "t=1,v1=AB").
func upperHex(header string) string {
	ts, sigs, _ := strings.Cut(header, ",")
	return ts + "," + "v1=" + strings.ToUpper(strings.TrimPrefix(sigs, "v1="))
}
