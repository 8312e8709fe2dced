package kg

import "testing"

// A missing or blank member of a record is that record's error, with its
// per-record code; the other records stand.
func TestUsagePushBlankMembersArePerRecord(t *testing.T) {
	good := `{"begin_time":"20261122T100000Z","end_time":"20261122T110000Z","instance_id":"i","metering_sn":"sn-ok","record_time":"20261122T110000Z","usage_value":"1.5"}`
	for _, c := range []struct {
		record, code, field string
	}{
		{`{"begin_time":"","end_time":"20261122T110000Z","instance_id":"i","metering_sn":"sn","record_time":"20261122T110000Z","usage_value":"1"}`, UsageErrTimeFormat, "begin_time"},
		{`{"begin_time":"20261122T100000Z","end_time":"20261122T110000Z","instance_id":"i","metering_sn":"sn","usage_value":"1"}`, UsageErrTimeFormat, "record_time"},
		{`{"begin_time":"20261122T100000Z","end_time":"20261122T110000Z","instance_id":"i","metering_sn":"sn","record_time":"20261122T110000Z","usage_value":" "}`, UsageErrUsageAbnormal, "usage_value"},
		{`{"begin_time":"20261122T100000Z","end_time":"20261122T110000Z","instance_id":"i","metering_sn":"","record_time":"20261122T110000Z","usage_value":"1"}`, UsageErrMissingSN, "metering_sn"},
	} {
		req, bad, err := DecodeUsagePush([]byte(`{"usage_records":[` + good + `,` + c.record + `]}`))
		if err != nil {
			t.Fatalf("%s: whole body refused: %v", c.record, err)
		}
		if len(req.UsageRecords) != 2 || len(bad) != 1 || bad[0].Index != 1 || bad[0].Code != c.code || bad[0].Field != c.field {
			t.Errorf("%s: %+v, want record 1 with %s on %s", c.record, bad, c.code, c.field)
		}
	}
}

// One verifier checks a push against several keys: the one that signed it,
// over the raw or the sorted body, is found; a malformed header fails every key.
func TestUsageVerifierManyKeys(t *testing.T) {
	raw := []byte(`{"usage_records":[{"usage_value":"1","metering_sn":"a"}]}`)
	canon, err := CanonicalJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		signed []byte
		want   string
	}{{raw, KitVariantRaw}, {canon, KitVariantSorted}} {
		v := NewUsageVerifier(UsageSignature("right", "1", "n", c.signed), "1", "n", raw)
		for _, k := range []string{"wrong-1", "wrong-2"} {
			if _, err := v.Verify(k); err == nil {
				t.Fatalf("%s verified", k)
			}
		}
		if got, err := v.Verify("right"); err != nil || got != c.want {
			t.Fatalf("right key: %q %v, want %s", got, err, c.want)
		}
	}
	v := NewUsageVerifier("not base64!", "1", "n", raw)
	if _, err := v.Verify("right"); err == nil {
		t.Fatal("malformed header verified")
	}
}
