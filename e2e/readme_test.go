package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soukhq/souk/internal/lockedbuf"
)

// readmeBlock returns the first sh code block after the README heading.
func readmeBlock(t *testing.T, root, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("README.md: no sh block under %q", heading)
	}
	block, _, ok := strings.Cut(rest, "```\n")
	if !ok {
		t.Fatalf("README.md: the sh block under %q does not end", heading)
	}
	return block
}

// TestReadmeWalkthrough runs the README's "Develop against the marketplace"
// block as written, with souk and the example vendor app on PATH, in an empty
// directory: a newcomer who pastes it gets a purchase through souk market,
// souk merchant and the app, and the FREEZE a month later.
func TestReadmeWalkthrough(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	block := readmeBlock(t, root, "## Develop against the marketplace")
	// The block's fixed addresses must be free, or it would talk to
	// something else.
	for _, addr := range []string{"127.0.0.1:8090", "127.0.0.1:8080", "127.0.0.1:9000"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the README walkthrough needs %s free: %v", addr, err)
		}
		ln.Close()
	}
	bin := filepath.Dir(soukBinary)
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "vendorapp"), "./examples/vendorapp")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/vendorapp: %v\n%s", err, out)
	}
	work := t.TempDir()
	// The servers the block starts in the background are stopped when it
	// ends, as a newcomer's terminal would when closed.
	// Deliveries to the app are asynchronous: after the block, wait up to
	// 20 s for both events to be delivered, then list them once more.
	script := "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + block + `
for i in $(seq 100); do
  [ "$(souk merchant events list | grep -c ' delivered ')" -ge 2 ] && break
  sleep 0.2
done
echo '--- after the block'
souk merchant events list
`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + work, "LANG=C.UTF-8"}
	// The block starts servers in the background: they are in the script's
	// process group, which is ended when it is done.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out lockedbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Start()
	if err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	s := out.String()
	if err != nil {
		t.Fatalf("the README block failed: %v\n%s", err, s)
	}
	// What the block promises: the purchase reached the app, and the FREEZE
	// a month later reached the merchant and then the app.
	for _, want := range []string{
		`"activity": "updateInstanceStatus"`, `"status": "FREEZE"`,
		`"lastCode": "000000"`, `"state": "succeeded"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("souk market messages shows no %s", want)
		}
	}
	events := map[string]bool{}
	_, after, _ := strings.Cut(s, "--- after the block\n")
	for _, line := range strings.Split(after, "\n") {
		if f := strings.Fields(line); len(f) >= 4 && strings.HasPrefix(f[0], "evt_") {
			events[f[1]+" "+f[3]] = true
		}
	}
	for _, want := range []string{"instance.created delivered", "instance.frozen delivered"} {
		if !events[want] {
			t.Errorf("souk merchant events list shows no %s: %v", want, events)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", s)
	}
}
