package merchant

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// Concurrent outbound calls to one host reuse their connections: a second
// round of 32 concurrent calls opens no new connection (Go's default
// transport would keep two and open about 30 more).
func TestDefaultHTTPClientReusesConnections(t *testing.T) {
	var conns atomic.Int64
	release := make(chan struct{})
	var arrived sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release // hold every call until all are in flight: 32 connections at once
		w.Write([]byte("{}"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := defaultHTTPClient()
	const n = 32
	round := func() {
		arrived.Add(n)
		release = make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}()
		}
		arrived.Wait()
		close(release)
		wg.Wait()
	}
	round()
	first := conns.Load()
	round()
	if first != n || conns.Load() != first {
		t.Fatalf("connections: %d in the first round, %d more in the second; want %d and 0", first, conns.Load()-first, n)
	}
}
