package buyertest

import (
	"io"
	"net/http"
	"net/url"
	"testing"
)

// Get fetches u with cl (a browser: cookies, redirects) and returns the last
// response with its body, read and closed.
func Get(t testing.TB, cl *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := cl.Get(u)
	return readAll(t, resp, err)
}

// PostForm posts form to u with cl and returns the last response with its
// body, read and closed.
func PostForm(t testing.TB, cl *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := cl.PostForm(u, form)
	return readAll(t, resp, err)
}

func readAll(t testing.TB, resp *http.Response, err error) (*http.Response, string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}
