package buyer

import (
	"strings"
	"testing"
)

func TestJudgeAnswer(t *testing.T) {
	cases := []struct {
		status  int
		body    string
		code    string
		success bool
	}{
		{200, `{"resultCode":"000000","resultMsg":"Success"}`, "000000", true},
		{200, `{"resultCode":0}`, "000000", true},
		{200, `{"resultCode":"000005","resultMsg":"db down"}`, "000005", false},
		{200, `{"resultCode":1}`, "000001", false},
		{200, `{"resultMsg":"ok"}`, "", false},
		{200, `not json`, "", false},
		{200, `[]`, "", false},
		{500, `{"resultCode":"000000"}`, "000000", false},
		{502, `<html>bad gateway</html>`, "", false},
		{200, `{"resultCode":"000000","resultMsg":42}`, "000000", true},
		{200, `{"resultCode":1e3}`, "1e3", false},
	}
	for _, tc := range cases {
		code, failure := judgeAnswer(tc.status, []byte(tc.body))
		if code != tc.code || (failure == "") != tc.success {
			t.Errorf("judgeAnswer(%d, %s) = %q, %q; want code %q success %v", tc.status, tc.body, code, failure, tc.code, tc.success)
		}
	}
}

// FuzzJudgeAnswer: any answer is judged without panic, and only HTTP 200
// with resultCode 000000 is a success.
func FuzzJudgeAnswer(f *testing.F) {
	f.Add(200, `{"resultCode":"000000"}`)
	f.Add(200, `{"resultCode":0}`)
	f.Add(500, `{"resultCode":"000000"}`)
	f.Add(200, `{"resultCode":"000004","resultMsg":"in progress"}`)
	f.Add(200, `{"resultCode":null}`)
	f.Fuzz(func(t *testing.T, status int, body string) {
		code, failure := judgeAnswer(status, []byte(body))
		if failure == "" && (status != 200 || code != "000000") {
			t.Fatalf("judgeAnswer(%d, %q) = success with code %q", status, body, code)
		}
		if failure != "" && strings.TrimSpace(failure) == "" {
			t.Fatal("blank failure")
		}
	})
}

func TestKitURL(t *testing.T) {
	cases := map[string]string{
		"https://isv.example.com":              "https://isv.example.com/produceAPI/v2/authSync",
		"https://isv.example.com/":             "https://isv.example.com/produceAPI/v2/authSync",
		"https://isv.example.com/saas/produce": "https://isv.example.com/saas/produce/produceAPI/v2/authSync",
		"https://isv.example.com/saas/?k=v":    "https://isv.example.com/saas/produceAPI/v2/authSync?k=v",
		"http://127.0.0.1:8080/x#frag":         "http://127.0.0.1:8080/x/produceAPI/v2/authSync",
	}
	for in, want := range cases {
		if got, err := kitURL(in, "authSync"); err != nil || got != want {
			t.Errorf("kitURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "isv.example.com", "ftp://x/", "https://"} {
		if _, err := kitURL(bad, "authSync"); err == nil {
			t.Errorf("kitURL(%q) accepted", bad)
		}
	}
}
