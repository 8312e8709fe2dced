package kg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Usage values (queryInstance usageInfo.usageValue, usage push usage_value)
// are Double(12,4) (saas-v2.md §4.2, §5.2): 12 digits in all, 4 of them
// decimals, so below 1e8 with at most 4 decimals. ParseUsageValue is the one
// check: souk's decoders (UsageInfo, CheckRecord) and the merchant's inputs
// all use it, so the merchant never accepts a value the marketplace refuses.
const (
	// UsageValueScale: a parsed usage value is an exact count of
	// ten-thousandths (1.5 → 15000).
	UsageValueScale = 10000
	// MaxUsageValue is the largest Double(12,4) usage value, 99999999.9999,
	// in ten-thousandths.
	MaxUsageValue int64 = 1e12 - 1
)

// ParseUsageValue checks a usage value against Double(12,4) and returns it
// exactly, in ten-thousandths (UsageValueScale). s is JSON number text, with
// surrounding spaces ignored ("12", "12.5", "0.0001", "1.5e3"); it must be
// ≥ 0 (> 0 when positive), have at most 4 decimals and be below 1e8.
func ParseUsageValue(s string, positive bool) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("is required")
	}
	if !isJSONNumber(s) {
		return 0, fmt.Errorf("%q is not a number", clip(s))
	}
	neg := strings.HasPrefix(s, "-")
	mant, exp, hasExp := strings.Cut(strings.ToLower(strings.TrimPrefix(s, "-")), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	point := len(intPart) // digits[:point] is the integer part
	lz := len(digits) - len(strings.TrimLeft(digits, "0"))
	digits, point = strings.TrimRight(digits[lz:], "0"), point-lz
	zero := digits == ""
	if hasExp && !zero {
		e, err := strconv.Atoi(strings.TrimPrefix(exp, "+"))
		switch {
		case err != nil && strings.HasPrefix(exp, "-"):
			return 0, fmt.Errorf("%s has more than 4 decimals, at most 4 allowed", clip(s))
		case err != nil:
			return 0, fmt.Errorf("%s exceeds Double(12,4) (at most 8 integer digits and 4 decimals)", clip(s))
		case e > 1000:
			point = 1000 // far beyond 8 integer digits; keeps point from overflowing
		case e < -1000:
			point = -1000
		default:
			point += e
		}
	}
	switch {
	case neg && !zero:
		if positive {
			return 0, fmt.Errorf("%s must be greater than 0", clip(s))
		}
		return 0, fmt.Errorf("%s must not be negative", clip(s))
	case zero && positive:
		return 0, fmt.Errorf("%s must be greater than 0", clip(s))
	case zero:
		return 0, nil
	}
	if d := len(digits) - point; d > 4 {
		return 0, fmt.Errorf("%s has %d decimals, at most 4 allowed", clip(s), d)
	}
	if point > 8 {
		return 0, fmt.Errorf("%s exceeds Double(12,4) (at most 8 integer digits and 4 decimals)", clip(s))
	}
	// digits × 10^(4-(len(digits)-point)): at most 12 digits, no overflow.
	v, err := strconv.ParseInt(digits+strings.Repeat("0", 4-(len(digits)-point)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", clip(s))
	}
	return v, nil
}

// FormatUsageValue writes a usage value in ten-thousandths as the shortest
// decimal text: 15000 → "1.5", 30000 → "3", 1 → "0.0001".
func FormatUsageValue(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	s := strconv.FormatInt(v/UsageValueScale, 10)
	if f := v % UsageValueScale; f != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%04d", f), "0")
	}
	return sign + s
}
