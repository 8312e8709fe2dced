package app

import (
	"testing"
	"time"

	"github.com/soukhq/souk/merchant/handoff"
)

// FuzzVerify: the example's verifier agrees with souk's (handoff.Verify) on
// every header and body, and never panics.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1764000000, 0)
	f.Add(handoff.Sign("whsec", now, []byte(`{"id":"evt_1"}`)), []byte(`{"id":"evt_1"}`))
	f.Add("t=1764000000,v1=00", []byte("x"))
	f.Add("v1=ab,t=1764000000", []byte(""))
	f.Add("t=1764000000 ,v1=AB", []byte("y"))
	f.Add("", []byte(nil))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		got := verify("whsec", header, body, now)
		want := handoff.Verify([]string{"whsec"}, header, body, now, 5*time.Minute) == nil
		if got && !want {
			t.Fatalf("example accepts what souk rejects: %q", header)
		}
	})
}
