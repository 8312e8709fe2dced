package kg

import (
	"testing"
	"time"
)

// bjEnd is the end of a Beijing calendar day, 23:59:59 UTC+8, as a UTC time:
// where KooGallery's billing periods end.
func bjEnd(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 15, 59, 59, 0, time.UTC) }

// A period ends at 23:59:59 Beijing time of the date n periods after the
// purchase's Beijing date (Huawei Cloud's billing rule; KooGallery's Query
// Order example); a renewal counts from the previous expiry.
func TestExpiryEndsTheBeijingDay(t *testing.T) {
	utc := func(y int, m time.Month, d, h, mi, s int) time.Time { return time.Date(y, m, d, h, mi, s, 0, time.UTC) }
	for _, c := range []struct {
		name   string
		from   time.Time
		period string
		n      int
		want   time.Time
	}{
		// KooGallery's Query Order example: createTime 20220726064736, a year → expireTime 20230726155959.
		{"Query Order example", utc(2022, 7, 26, 6, 47, 36), "year", 1, bjEnd(2023, 7, 26)},
		// Huawei Cloud's billing example: bought 2023/03/08 15:50:04 (UTC+8) for a year, then renewed a year.
		{"billing example", utc(2023, 3, 8, 7, 50, 4), "year", 1, bjEnd(2024, 3, 8)},
		{"billing example renewed", bjEnd(2024, 3, 8), "year", 1, bjEnd(2025, 3, 8)},
		{"month, Beijing afternoon", utc(2026, 3, 2, 8, 0, 0), "month", 1, bjEnd(2026, 4, 2)},
		// Around Beijing midnight (16:00 UTC): the Beijing date counts, not the UTC one.
		{"last second of a Beijing day", utc(2026, 3, 2, 15, 59, 59), "month", 1, bjEnd(2026, 4, 2)},
		{"last instant of a Beijing day", time.Date(2026, 3, 2, 15, 59, 59, 999999999, time.UTC), "month", 1, bjEnd(2026, 4, 2)},
		{"Beijing midnight", utc(2026, 3, 2, 16, 0, 0), "month", 1, bjEnd(2026, 4, 3)},
		{"UTC midnight is 08:00 in Beijing", utc(2026, 3, 3, 0, 0, 0), "month", 1, bjEnd(2026, 4, 3)},
		{"already the next Beijing day", utc(2026, 1, 31, 20, 0, 0), "month", 1, bjEnd(2026, 3, 1)},
		{"year end in Beijing", utc(2026, 12, 31, 16, 30, 0), "year", 1, bjEnd(2028, 1, 1)},
		// Month ends clamp on the Beijing calendar, as Java's LocalDate.plusMonths.
		{"Jan 31 + 1 month", utc(2026, 1, 31, 10, 0, 0), "month", 1, bjEnd(2026, 2, 28)},
		{"Jan 31 + 1 month, leap year", utc(2028, 1, 31, 3, 0, 0), "month", 1, bjEnd(2028, 2, 29)},
		{"Mar 31 + 1 month", utc(2026, 3, 31, 1, 0, 0), "month", 1, bjEnd(2026, 4, 30)},
		{"Jan 31 + 2 months", utc(2026, 1, 31, 1, 0, 0), "month", 2, bjEnd(2026, 3, 31)},
		{"Aug 31 + 6 months", utc(2026, 8, 31, 1, 0, 0), "month", 6, bjEnd(2027, 2, 28)},
		{"Dec 31 + 14 months", utc(2026, 12, 31, 1, 0, 0), "month", 14, bjEnd(2028, 2, 29)},
		{"Jan 30 UTC evening is Jan 31 in Beijing", utc(2026, 1, 30, 17, 0, 0), "month", 1, bjEnd(2026, 2, 28)},
		// Leap day.
		{"Feb 29 + 1 year", utc(2028, 2, 29, 12, 30, 0), "year", 1, bjEnd(2029, 2, 28)},
		{"Feb 29 + 4 years", utc(2028, 2, 29, 2, 0, 0), "year", 4, bjEnd(2032, 2, 29)},
		{"Feb 28 UTC evening is Feb 29 in Beijing", utc(2028, 2, 28, 18, 0, 0), "year", 1, bjEnd(2029, 2, 28)},
		// Renewals count from the expiry, which stays at the end of a day (Jan 31 → Feb 28 → Mar 28).
		{"renewal of Jan 31", bjEnd(2026, 1, 31), "month", 1, bjEnd(2026, 2, 28)},
		{"renewal of Feb 28", bjEnd(2026, 2, 28), "month", 1, bjEnd(2026, 3, 28)},
		{"renewal by 3 months", bjEnd(2026, 4, 2), "month", 3, bjEnd(2026, 7, 2)},
		{"renewal as years", bjEnd(2026, 4, 2), "year", 2, bjEnd(2028, 4, 2)},
		// Trials and day plans: the same rule.
		{"7-day trial", utc(2026, 3, 2, 8, 0, 0), "day", 7, bjEnd(2026, 3, 9)},
		{"1 day after Beijing midnight", utc(2026, 2, 28, 17, 0, 0), "day", 1, bjEnd(2026, 3, 2)},
		{"1 day across the Beijing year end", utc(2026, 12, 31, 16, 30, 0), "day", 1, bjEnd(2027, 1, 2)},
		{"day renewal", bjEnd(2026, 3, 9), "day", 30, bjEnd(2026, 4, 8)},
		// One period back from an expiry: where the period being paid began (upgrade proration).
		{"period start, month", bjEnd(2026, 3, 31), "month", -1, bjEnd(2026, 2, 28)},
		{"period start, year", bjEnd(2027, 3, 2), "year", -1, bjEnd(2026, 3, 2)},
		// A period type without a calendar adds nothing and rounds nothing.
		{"unknown period type", utc(2026, 3, 2, 8, 0, 0), "hour", 3, utc(2026, 3, 2, 8, 0, 0)},
	} {
		got := Expiry(c.from, c.period, c.n)
		if !got.Equal(c.want) || got.Location() != time.UTC {
			t.Errorf("%s: Expiry(%s, %s, %d) = %s, want %s", c.name, c.from.Format(time.RFC3339Nano), c.period, c.n, got, c.want)
		}
		// The instant counts, not the zone t is given in.
		if got := Expiry(c.from.In(time.FixedZone("UTC-5", -5*3600)), c.period, c.n); !got.Equal(c.want) {
			t.Errorf("%s: in UTC-5: %s, want %s", c.name, got, c.want)
		}
	}
	// The wire form: 14-digit UTC.
	if got := FormatTime14(Expiry(time.Date(2022, 7, 26, 6, 47, 36, 0, time.UTC), "year", 1)); got != "20230726155959" {
		t.Fatalf("Query Order example expireTime = %s, want 20230726155959", got)
	}
}

// Month and year periods clamp to the last day of a shorter month, as Java's
// LocalDate does (Jan 31 + 1 month = Feb 28, not Mar 3); the calendar
// arithmetic under Expiry.
func TestAddPeriodClampsMonthEnd(t *testing.T) {
	d := func(y int, m time.Month, day int) time.Time { return time.Date(y, m, day, 8, 30, 15, 0, time.UTC) }
	for _, c := range []struct {
		from   time.Time
		period string
		n      int
		want   time.Time
	}{
		{d(2026, 1, 31), "month", 1, d(2026, 2, 28)},
		{d(2028, 1, 31), "month", 1, d(2028, 2, 29)},
		{d(2026, 3, 31), "month", 1, d(2026, 4, 30)},
		{d(2026, 1, 31), "month", 2, d(2026, 3, 31)},
		{d(2026, 8, 31), "month", 6, d(2027, 2, 28)},
		{d(2026, 12, 31), "month", 14, d(2028, 2, 29)},
		{d(2028, 2, 29), "year", 1, d(2029, 2, 28)},
		{d(2028, 2, 29), "year", 4, d(2032, 2, 29)},
		{d(2026, 3, 2), "month", 1, d(2026, 4, 2)},
		{d(2026, 1, 31), "day", 1, d(2026, 2, 1)},
	} {
		if got := addPeriod(c.from, c.period, c.n); !got.Equal(c.want) {
			t.Errorf("%s + %d %s = %s, want %s", c.from.Format(time.DateOnly), c.n, c.period, got, c.want)
		}
	}
}
