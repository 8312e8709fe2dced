package kg

import "time"

// beijing is UTC+8, the zone KooGallery counts billing periods in.
var beijing = time.FixedZone("UTC+8", 8*3600)

// Expiry returns when n periods of periodType ("year", "month" or "day")
// bought or renewed at t end, as KooGallery bills them: a billing period is
// counted in Beijing time (UTC+8) and ends at 23:59:59 of its expiry date, the
// date n periods after t's Beijing date. Huawei Cloud's billing pages (e.g.
// support.huaweicloud.com/price-gaussdbformysql/gaussdbformysql_00_0003.html,
// price-iothub/iot_price_00012.html, price-eds/eds_06_0003.html): "计费周期是根据
// 您购买的时长来确定的(以UTC+8时间为准)…终点则是到期日的23:59:59"; bought
// 2023/03/08 15:50:04 for a year → 2024/03/08 23:59:59, renewed a year →
// 2025/03/08 23:59:59 (price-ai4sservice/ai4sservice_08_0006.html). KooGallery's own Query Order example agrees: an order
// created 20220726064736 (UTC, 14:47:36 in Beijing) for a year has expireTime
// 20230726155959 (UTC) = 2023-07-26 23:59:59 in Beijing. A renewal counts from
// the current expiry, which already ends a day, so it stays at 23:59:59. The
// result is in UTC, whole seconds. Another period type adds nothing (t is
// returned as it is): there is no documented hour-like period to round.
func Expiry(t time.Time, periodType string, n int) time.Time {
	switch periodType {
	case "year", "month", "day":
		y, mo, d := addPeriod(t.In(beijing), periodType, n).Date()
		return time.Date(y, mo, d, 23, 59, 59, 0, beijing).UTC()
	}
	return t
}

// addPeriod returns t plus n periods ("year", "month" or "day"; another
// period type adds nothing) on t's own calendar. Months and years end on the
// same day of the month, clamped to the last day of a shorter month (Jan 31 +
// 1 month = Feb 28; Feb 29 + 1 year = Feb 28), as Java's LocalDate.plusMonths
// does — not Go's AddDate, which normalises Jan 31 + 1 month to Mar 3.
func addPeriod(t time.Time, periodType string, n int) time.Time {
	switch periodType {
	case "year":
		return addMonths(t, 12*n)
	case "month":
		return addMonths(t, n)
	case "day":
		return t.AddDate(0, 0, n)
	}
	return t
}

func addMonths(t time.Time, n int) time.Time {
	y, mo, d := t.Date()
	first := time.Date(y, mo+time.Month(n), 1, 0, 0, 0, 0, t.Location())
	if last := first.AddDate(0, 1, -1).Day(); d > last {
		d = last
	}
	return time.Date(first.Year(), first.Month(), d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
}
