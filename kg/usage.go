package kg

import (
	"fmt"
	"strings"
)

// UsagePushMaxRecords is the most records one usage push may carry.
const UsagePushMaxRecords = 1000

// Per-record usage-push error codes (saas-v2.md §5.2, unconfirmed list).
const (
	UsageErrInstanceNotFound = "001" // instance does not exist
	UsageErrTimeFormat       = "002" // time format wrong
	UsageErrUsageAbnormal    = "003" // usage abnormal
	UsageErrMissingSN        = "004" // missing unique record ID
	UsageErrDuplicateSN      = "005" // duplicate unique record ID
	UsageErrProductDelisted  = "006" // product delisted
	UsageErrRecordExpired    = "007" // record time expired
	UsageErrNotSellers       = "009" // instance does not belong to this seller
	UsageErrDuplicateRecord  = "010" // duplicate record
	UsageErrTimeRange        = "011" // invalid time range
	UsageErrNotOnDemand      = "012" // instance is not pay-per-use
	UsageErrInstanceStatus   = "013" // instance status abnormal
)

// UsagePushRequest is the usage-push body. Members are declared in sorted
// order so that json.Marshal emits the naturally sorted body that is signed.
type UsagePushRequest struct {
	UsageRecords []UsageRecord `json:"usage_records" kg:"req"`
}

// UsageRecord is one usage record (UsagePushData). Times are yyyyMMdd'T'HHmmss'Z'.
// Its members are mandatory, but a missing or blank one is the record's own
// error (per-record code: 002 for a time, 003 for the value, 004 for the
// serial number, 001 for the instance, by the receiver), not the body's:
// CheckRecord, not the decoder, refuses it.
type UsageRecord struct {
	BeginTime         string `json:"begin_time" kg:"max=17"`
	EndTime           string `json:"end_time" kg:"max=17"`
	InstanceID        string `json:"instance_id" kg:"max=64"`
	MeteringSN        string `json:"metering_sn" kg:"max=64"`
	RecordTime        string `json:"record_time" kg:"max=17"`
	RelatePkgInstance string `json:"relate_pkg_instance,omitempty" kg:"max=64"`
	UsageValue        string `json:"usage_value" kg:"max=20"`
}

// UsagePushResponse is the usage-push answer.
type UsagePushResponse struct {
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg,omitempty"`
}

// UsageRecordError is a record that fails validation, with its per-record code.
type UsageRecordError struct {
	Index int
	Code  string // UsageErr…
	Field string
	Msg   string
}

func (e *UsageRecordError) Error() string {
	return fmt.Sprintf("usage_records[%d].%s: %s (%s)", e.Index, e.Field, e.Msg, e.Code)
}

// CheckRecord validates one record on its own (formats, value, time range)
// and returns the per-record error code, or "" when it is well-formed.
// Checks that need state (instance, duplicates, age) are the receiver's.
func CheckRecord(i int, r UsageRecord) *UsageRecordError {
	if strings.TrimSpace(r.MeteringSN) == "" {
		return &UsageRecordError{i, UsageErrMissingSN, "metering_sn", "is required"}
	}
	times := map[string]string{"record_time": r.RecordTime, "begin_time": r.BeginTime, "end_time": r.EndTime}
	for _, f := range []string{"record_time", "begin_time", "end_time"} {
		if _, err := ParseUsageTime(times[f]); err != nil {
			return &UsageRecordError{i, UsageErrTimeFormat, f, err.Error()}
		}
	}
	b, _ := ParseUsageTime(r.BeginTime)
	e, _ := ParseUsageTime(r.EndTime)
	if !b.Before(e) {
		return &UsageRecordError{i, UsageErrTimeRange, "end_time", "must be after begin_time"}
	}
	if err := checkUsageValue(Number(strings.TrimSpace(r.UsageValue)), true); err != nil {
		return &UsageRecordError{i, UsageErrUsageAbnormal, "usage_value", err.Error()}
	}
	return nil
}

func (u *UsagePushRequest) validate(p string) error {
	switch n := len(u.UsageRecords); {
	case n == 0:
		return &FieldError{Field: joinPath(p, "usage_records"), Reason: "is empty"}
	case n > UsagePushMaxRecords:
		return &FieldError{Field: joinPath(p, "usage_records"), Reason: fmt.Sprintf("has %d records, at most %d allowed", n, UsagePushMaxRecords)}
	}
	return nil
}

// EncodeUsagePush validates a usage push and returns the exact body to send
// and sign: compact JSON with every object's keys sorted.
func EncodeUsagePush(req *UsagePushRequest) ([]byte, error) {
	if err := req.validate(""); err != nil {
		return nil, err
	}
	for i, r := range req.UsageRecords {
		if e := CheckRecord(i, r); e != nil {
			return nil, &FieldError{Field: fmt.Sprintf("usage_records[%d].%s", i, e.Field), Reason: e.Msg}
		}
	}
	b, err := marshalCompact(req)
	if err != nil {
		return nil, err
	}
	return CanonicalJSON(b)
}

// DecodeUsagePush decodes a usage-push body (for the market). Envelope errors
// are *FieldError; per-record problems are returned separately so the caller
// can answer each record's code.
func DecodeUsagePush(body []byte) (*UsagePushRequest, []*UsageRecordError, error) {
	var req UsagePushRequest
	if err := decodeLenient(body, &req); err != nil {
		return nil, nil, err
	}
	var bad []*UsageRecordError
	for i, r := range req.UsageRecords {
		if e := CheckRecord(i, r); e != nil {
			bad = append(bad, e)
		}
	}
	return &req, bad, nil
}
