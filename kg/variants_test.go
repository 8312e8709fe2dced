package kg

import (
	"slices"
	"testing"
)

func TestDecodeRequestVariants(t *testing.T) {
	for _, c := range []struct {
		body string
		want []string
	}{
		{`{"activity":"newInstance","orderId":"o","orderLineId":"l","businessId":"b"}`, []string{"testFlag_absent"}},
		{`{"activity":"newInstance","orderId":"o","orderLineId":"l","businessId":"b","testFlag":"0"}`, []string{"testFlag_0"}},
		{`{"activity":"newInstance","orderId":123,"orderLineId":"l","businessId":"b","testFlag":1}`, []string{"number_as_string_orderId", "number_as_string_testFlag", "testFlag_1"}},
		{`{"Activity":"newInstance","OrderId":"o","orderLineId":"l","businessId":"b"}`, []string{"member_case_activity", "member_case_orderId", "testFlag_absent"}},
		{`{"activity":"refreshInstance","instanceId":"i","orderId":"o","orderLineId":"l","scene":"RENEWAL","expireTime":"20991231000000"}`, []string{"testFlag_absent", "expireTime_14"}},
		{`{"activity":"refreshInstance","instanceId":"i","orderId":"o","orderLineId":"l","scene":"RENEWAL","expireTime":"20991231000000000","testFlag":"1"}`, []string{"testFlag_1", "expireTime_17"}},
		{`{"activity":"updateInstanceStatus","instanceId":"i","status":"freeze"}`, []string{"testFlag_absent", "status_not_upper_case"}},
		{`{"activity":"updateInstanceStatus","instanceId":"i","status":"FREEZE"}`, []string{"testFlag_absent"}},
	} {
		_, got, err := DecodeRequestVariants([]byte(c.body))
		if err != nil {
			t.Fatalf("%s: %v", c.body, err)
		}
		slices.Sort(got)
		want := slices.Clone(c.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: variants %v, want %v", c.body, got, want)
		}
	}
	if _, v, err := DecodeRequestVariants([]byte(`{"activity":"newInstance"}`)); err == nil || v != nil {
		t.Errorf("a request that does not decode: %v %v", v, err)
	}
}

func TestSignatureHexCase(t *testing.T) {
	for in, want := range map[string]string{"abc123": "lower", "ABC123": "upper", "aBc123": "mixed", "0123": "lower"} {
		if got := SignatureHexCase(in); got != want {
			t.Errorf("SignatureHexCase(%q) = %q, want %q", in, got, want)
		}
	}
}
