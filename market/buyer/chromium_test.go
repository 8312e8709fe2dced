package buyer_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soukhq/souk/db/dbtest"
)

// The browser test drives a real headless Chromium through the login pages
// over the Chrome DevTools Protocol (a small client below: a WebSocket and
// JSON commands). It needs Chromium: SOUK_CHROMIUM names the binary
// (default /usr/bin/chromium). A missing browser FAILS the test — CI must
// provide one — rather than skipping it.

func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("SOUK_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(p); err != nil {
		t.Fatalf("Chromium is required for the browser test and was not found at %q (%v): install it (apt-get install chromium) or set SOUK_CHROMIUM to its path", p, err)
	}
	return p
}

var devtoolsRE = regexp.MustCompile(`DevTools listening on (ws://[^\s]+)`)

// launchChromium starts a headless browser and returns the WebSocket URL of
// a page target.
func launchChromium(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "souk-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(chromiumPath(t), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
		"--user-data-dir="+dir, "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers die with it
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		for range 50 { // helpers may still be exiting
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove %s", dir)
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	var browserWS string
	select {
	case browserWS = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("Chromium did not print its DevTools address within 30 s")
	}
	u, err := url.Parse(browserWS)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + u.Host + "/json/list")
		if err == nil {
			var targets []struct{ Type, WebSocketDebuggerURL string }
			if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
				t.Logf("Chromium /json/list: %v", err)
			}
			resp.Body.Close()
			for _, tg := range targets {
				if tg.Type == "page" && tg.WebSocketDebuggerURL != "" {
					return tg.WebSocketDebuggerURL
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("Chromium has no page target")
	return ""
}

// ---- a minimal WebSocket client (RFC 6455), enough for CDP ----

type wsConn struct {
	c  net.Conn
	br *bufio.Reader
}

func wsDial(raw string) (*wsConn, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	kb := make([]byte, 16)
	_, _ = rand.Read(kb)
	key := base64.StdEncoding.EncodeToString(kb)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		u.RequestURI(), u.Host, key)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		c.Close()
		return nil, err
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		c.Close()
		return nil, fmt.Errorf("websocket handshake: %s", resp.Status)
	}
	return &wsConn{c: c, br: br}, nil
}

func (w *wsConn) writeText(p []byte) error {
	var hdr []byte
	hdr = append(hdr, 0x81) // FIN, text
	switch n := len(p); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n < 1<<16:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	mask := make([]byte, 4)
	_, _ = rand.Read(mask)
	hdr = append(hdr, mask...)
	body := make([]byte, len(p))
	for i := range p {
		body[i] = p[i] ^ mask[i%4]
	}
	_, err := w.c.Write(append(hdr, body...))
	return err
}

func (w *wsConn) readMessage() ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(w.br, h[:]); err != nil {
			return nil, err
		}
		fin, op := h[0]&0x80 != 0, h[0]&0x0f
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(w.br, b[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(w.br, b[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if n > 64<<20 {
			return nil, errors.New("websocket frame too large")
		}
		var mask [4]byte
		if h[1]&0x80 != 0 {
			if _, err := io.ReadFull(w.br, mask[:]); err != nil {
				return nil, err
			}
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(w.br, p); err != nil {
			return nil, err
		}
		if h[1]&0x80 != 0 {
			for i := range p {
				p[i] ^= mask[i%4]
			}
		}
		switch op {
		case 0x8:
			return nil, errors.New("websocket closed by the browser")
		case 0x9, 0xA: // ping/pong: CDP does not rely on them
			continue
		}
		msg = append(msg, p...)
		if fin {
			return msg, nil
		}
	}
}

// ---- CDP ----

type cdp struct {
	t  *testing.T
	ws *wsConn
	id int
}

func (c *cdp) call(method string, params any, result any) {
	c.t.Helper()
	if err := c.try(method, params, result); err != nil {
		c.t.Fatal(err)
	}
}

// cdpError is an error answer of the browser to a call.
type cdpError struct{ method, msg string }

func (e *cdpError) Error() string { return "cdp " + e.method + ": " + e.msg }

// try is call returning the browser's error answer (a *cdpError) rather than
// failing the test; transport failures still fail it.
func (c *cdp) try(method string, params any, result any) error {
	c.t.Helper()
	c.id++
	req, _ := json.Marshal(map[string]any{"id": c.id, "method": method, "params": params})
	_ = c.ws.c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := c.ws.writeText(req); err != nil {
		c.t.Fatalf("cdp %s: %v", method, err)
	}
	for {
		b, err := c.ws.readMessage()
		if err != nil {
			c.t.Fatalf("cdp %s: %v", method, err)
		}
		var resp struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &resp) != nil || resp.ID != c.id {
			continue // an event
		}
		if resp.Error != nil {
			return &cdpError{method: method, msg: resp.Error.Message}
		}
		if result != nil {
			if err := json.Unmarshal(resp.Result, result); err != nil {
				c.t.Fatalf("cdp %s result: %v", method, err)
			}
		}
		return nil
	}
}

// eval evaluates a JavaScript expression in the page and returns its value as a string.
func (c *cdp) eval(expr string) string {
	c.t.Helper()
	v, err := c.tryEval(expr)
	if err != nil {
		c.t.Fatal(err)
	}
	return v
}

// tryEval is eval returning the browser's refusal (a *cdpError), such as
// "Inspected target navigated or closed" when the page navigates while the
// expression runs.
func (c *cdp) tryEval(expr string) (string, error) {
	c.t.Helper()
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := c.try("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r); err != nil {
		return "", err
	}
	if r.ExceptionDetails != nil {
		c.t.Fatalf("evaluate %s: %s", expr, r.ExceptionDetails.Text)
	}
	if s, ok := r.Result.Value.(string); ok {
		return s, nil
	}
	return fmt.Sprint(r.Result.Value), nil
}

func (c *cdp) navigate(u string) {
	c.t.Helper()
	c.call("Page.navigate", map[string]any{"url": u}, nil)
}

// waitFor polls until cond(location.href, body text) holds. A poll that a
// navigation interrupts (the page redirects while it is read) is retried.
func (c *cdp) waitFor(what string, cond func(href, text string) bool) (string, string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var href, text string
	var lastErr error
	for time.Now().Before(deadline) {
		h, t, err := c.page()
		if err == nil && cond(h, t) {
			return h, t
		}
		if err == nil {
			href, text = h, t
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("waiting for %s: page stayed at %s (last error %v):\n%s", what, href, lastErr, text)
	return "", ""
}

// page reads location.href and the body's text once the document is
// complete (errNotReady before).
func (c *cdp) page() (href, text string, err error) {
	c.t.Helper()
	state, err := c.tryEval("document.readyState")
	if err != nil {
		return "", "", err
	}
	if state != "complete" {
		return "", "", errNotReady
	}
	if href, err = c.tryEval("location.href"); err != nil {
		return "", "", err
	}
	if text, err = c.tryEval("document.body ? document.body.innerText : ''"); err != nil {
		return "", "", err
	}
	return href, text, nil
}

var errNotReady = errors.New("document not complete")

func (c *cdp) fill(id, value string) {
	c.t.Helper()
	v, _ := json.Marshal(value)
	if got := c.eval(fmt.Sprintf(`(function(){var e=document.getElementById(%q); if(!e) return "missing"; e.value=%s; return "ok"})()`, id, v)); got != "ok" {
		c.t.Fatalf("form field %s: %s", id, got)
	}
}

func TestChromiumLoginPages(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) {
			j := newJoint(t, backend)
			ws, err := wsDial(launchChromium(t))
			if err != nil {
				t.Fatal(err)
			}
			defer ws.c.Close()
			c := &cdp{t: t, ws: ws}
			c.call("Page.enable", map[string]any{}, nil)
			c.call("Runtime.enable", map[string]any{}, nil)

			// 1. The merchant's sign-in link leads to the IdP's login form.
			c.navigate(j.merchant.URL + "/sso/login?tenant=" + url.QueryEscape(j.ent.ID))
			href, _ := c.waitFor("the login form", func(href, text string) bool { return strings.Contains(text, "Sign in to your enterprise") })
			if !strings.HasPrefix(href, j.market.URL+"/api/v1/oauth2/authorize?") {
				t.Fatalf("login form at %s", href)
			}
			if c.eval(`document.getElementById("tenant").readOnly`) != "true" || c.eval(`document.getElementById("tenant").value`) != "acme" {
				t.Errorf("the enterprise field must be fixed to the client's enterprise")
			}
			// A wrong password: the form again, with the error.
			c.fill("username", "alice")
			c.fill("password", "not-her-password")
			c.eval(`document.getElementById("submit").click(), "clicked"`)
			c.waitFor("the error", func(_, text string) bool { return strings.Contains(text, "Wrong enterprise, user name or password") })
			// The right one: back at the vendor app, signed in.
			c.fill("username", "alice")
			c.fill("password", "alice-password")
			c.eval(`document.getElementById("submit").click(), "clicked"`)
			c.waitFor("the vendor app", func(href, text string) bool {
				return strings.HasPrefix(href, j.merchant.URL+"/") && text == "vendor app home"
			})
			c.navigate(j.merchant.URL + "/sso/me")
			_, text := c.waitFor("/sso/me", func(href, text string) bool { return strings.Contains(text, `"userName"`) })
			var me struct{ UserName, Role, Department string }
			if err := json.Unmarshal([]byte(text), &me); err != nil || me.UserName != "alice" || me.Role != "admin" || me.Department != "110" {
				t.Fatalf("/sso/me in the browser: %v %s", err, text)
			}

			// 2. The documented unified-login hash route, after signing out of the IdP.
			c.navigate(j.market.URL + "/api/v1/logout")
			c.waitFor("the signed-out login page", func(href, text string) bool { return strings.Contains(text, "Sign in to your enterprise") })
			c.navigate(j.market.URL + "/unified-login/#/portal-login?ind=UNOP&appId=app-e2e")
			c.waitFor("the portal-login form", func(href, text string) bool {
				return strings.Contains(href, "/unified-login/portal-login?ind=UNOP&appId=app-e2e") && strings.Contains(text, "Sign in")
			})
			c.fill("tenant", "acme")
			c.fill("username", "bob")
			c.fill("password", "bob-password")
			c.eval(`document.getElementById("submit").click(), "clicked"`)
			href, _ = c.waitFor("the merchant after unified login", func(href, text string) bool {
				return strings.HasPrefix(href, j.merchant.URL+"/") && text == "vendor app home"
			})
			c.navigate(j.merchant.URL + "/sso/me")
			_, text = c.waitFor("/sso/me", func(href, text string) bool { return strings.Contains(text, `"userName"`) })
			if !strings.Contains(text, `"userName":"bob"`) {
				t.Fatalf("/sso/me after the unified login: %s (from %s)", text, href)
			}

			// 3. A disabled member is refused by the login page.
			if _, err := j.center.SetMembersEnabled(context.Background(), j.ent.ID, []string{j.members["alice"]}, false); err != nil {
				t.Fatal(err)
			}
			c.navigate(j.market.URL + "/api/v1/logout")
			c.waitFor("signed out", func(href, text string) bool { return strings.Contains(text, "Sign in") })
			c.navigate(j.merchant.URL + "/sso/login?tenant=" + url.QueryEscape(j.ent.ID))
			c.waitFor("the login form", func(href, text string) bool { return strings.Contains(text, "Sign in to your enterprise") })
			c.fill("username", "alice")
			c.fill("password", "alice-password")
			c.eval(`document.getElementById("submit").click(), "clicked"`)
			c.waitFor("the refusal", func(_, text string) bool { return strings.Contains(text, "This account is disabled") })
		})
	}
}
