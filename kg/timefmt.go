package kg

import (
	"fmt"
	"strconv"
	"time"
)

// Time layouts of the protocol.
const (
	Layout14    = "20060102150405"   // yyyyMMddHHmmss (UTC): expireTime, Query Order times
	LayoutUsage = "20060102T150405Z" // yyyyMMdd'T'HHmmss'Z' (UTC): usage push record/begin/end times
)

// kitZone is the UTC+8 zone of the kit timeStamp fields (joint-kit.md §1).
var kitZone = time.FixedZone("UTC+8", 8*3600)

// ParseTime14 parses yyyyMMddHHmmss as UTC.
func ParseTime14(s string) (time.Time, error) {
	if len(s) != 14 || !isDigits(s) {
		return time.Time{}, fmt.Errorf("%q is not yyyyMMddHHmmss", clip(s))
	}
	t, err := time.ParseInLocation(Layout14, s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a valid yyyyMMddHHmmss time", clip(s))
	}
	return t, nil
}

// ParseTime17 parses yyyyMMddHHmmssSSS as UTC.
func ParseTime17(s string) (time.Time, error) {
	return parseTime17In(s, time.UTC)
}

func parseTime17In(s string, loc *time.Location) (time.Time, error) {
	if len(s) != 17 || !isDigits(s) {
		return time.Time{}, fmt.Errorf("%q is not yyyyMMddHHmmssSSS", clip(s))
	}
	t, err := time.ParseInLocation(Layout14, s[:14], loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a valid yyyyMMddHHmmssSSS time", clip(s))
	}
	ms, _ := strconv.Atoi(s[14:])
	return t.Add(time.Duration(ms) * time.Millisecond), nil
}

// ParseExpireTime parses an expireTime of 14 (yyyyMMddHHmmss) or 17
// (yyyyMMddHHmmssSSS) digits, in UTC (saas-v2.md §4.3: accept both).
func ParseExpireTime(s string) (time.Time, error) {
	switch len(s) {
	case 14:
		return ParseTime14(s)
	case 17:
		return ParseTime17(s)
	}
	return time.Time{}, fmt.Errorf("%q must be yyyyMMddHHmmss or yyyyMMddHHmmssSSS", clip(s))
}

// FormatTime14 formats t in UTC as yyyyMMddHHmmss.
func FormatTime14(t time.Time) string { return t.UTC().Format(Layout14) }

// FormatTime17 formats t in UTC as yyyyMMddHHmmssSSS.
func FormatTime17(t time.Time) string { return format17(t.UTC()) }

// format17 formats t in its own location as yyyyMMddHHmmssSSS.
func format17(t time.Time) string {
	return t.Format(Layout14) + fmt.Sprintf("%03d", t.Nanosecond()/int(time.Millisecond))
}

// ParseKitTimeStamp parses a kit timeStamp (yyyyMMddHHmmssSSS in UTC+8) and
// returns it in UTC.
func ParseKitTimeStamp(s string) (time.Time, error) {
	t, err := parseTime17In(s, kitZone)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// FormatKitTimeStamp formats t as a kit timeStamp (yyyyMMddHHmmssSSS, UTC+8).
func FormatKitTimeStamp(t time.Time) string { return format17(t.In(kitZone)) }

// ParseUsageTime parses a usage-push time, yyyyMMdd'T'HHmmss'Z' (UTC).
func ParseUsageTime(s string) (time.Time, error) {
	if len(s) != 16 || s[8] != 'T' || s[15] != 'Z' || !isDigits(s[:8]) || !isDigits(s[9:15]) {
		return time.Time{}, fmt.Errorf("%q is not yyyyMMddTHHmmssZ", clip(s))
	}
	t, err := time.ParseInLocation(LayoutUsage, s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a valid yyyyMMddTHHmmssZ time", clip(s))
	}
	return t, nil
}

// FormatUsageTime formats t in UTC as yyyyMMdd'T'HHmmss'Z'.
func FormatUsageTime(t time.Time) string { return t.UTC().Format(LayoutUsage) }

// FormatTimestampMillis formats t as the 13-digit Unix-millisecond timestamp
// of signed requests.
func FormatTimestampMillis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
