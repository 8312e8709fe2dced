package kg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Number is a JSON number that is also accepted as a string holding a number
// ("12.5" or 12.5), as KooGallery's documents show both. It marshals as a JSON
// number; the empty Number is omitted with omitempty (or written as null).
type Number string

// MarshalJSON writes the number text; an empty Number is null.
func (n Number) MarshalJSON() ([]byte, error) {
	if n == "" {
		return []byte("null"), nil
	}
	if !isJSONNumber(string(n)) {
		return nil, fmt.Errorf("kg: %q is not a number", string(n))
	}
	return []byte(n), nil
}

// UnmarshalJSON accepts a number, a string holding a number, or null.
func (n *Number) UnmarshalJSON(b []byte) error {
	v, err := parseJSON(b)
	if err != nil {
		return err
	}
	s, err := numberFrom(v)
	if err != nil {
		return err
	}
	*n = Number(s)
	return nil
}

// Float64 returns the number as a float64 (0 when empty).
func (n Number) Float64() (float64, error) {
	if n == "" {
		return 0, nil
	}
	return strconv.ParseFloat(string(n), 64)
}

// Int64 returns the number as an int64; a fractional or out-of-range value is an error.
func (n Number) Int64() (int64, error) {
	if n == "" {
		return 0, nil
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i, nil
	}
	// big.Rat expands an exponent in full: "1e999999" took 25 ms, and a
	// body may carry thousands of such numbers. An exponent beyond the
	// mantissa's length by more than 20 decides the answer without it: the
	// value is 0 (a zero mantissa), below 1e-20 (not an integer), or above
	// 1e20 (out of range).
	mant, exp, hasExp := strings.Cut(strings.ToLower(string(n)), "e")
	if hasExp {
		e, err := strconv.Atoi(strings.TrimPrefix(exp, "+"))
		if err != nil || e > len(mant)+20 || e < -(len(mant)+20) {
			switch digits := strings.TrimLeft(exp, "+-"); {
			case digits == "" || !isDigits(digits):
				return 0, fmt.Errorf("kg: %q is not a number", string(n))
			case strings.Trim(mant, "-+0.") == "":
				return 0, nil // zero
			}
			return 0, fmt.Errorf("kg: %q is not an integer in range", string(n))
		}
	}
	r, ok := new(big.Rat).SetString(string(n))
	if !ok || !r.IsInt() || !r.Num().IsInt64() {
		return 0, fmt.Errorf("kg: %q is not an integer", string(n))
	}
	return r.Num().Int64(), nil
}

// Decimals returns the number of digits after the decimal point (exponent
// notation is expanded).
func (n Number) Decimals() int {
	s := strings.TrimPrefix(strings.ToLower(string(n)), "-")
	mant, exp, hasExp := strings.Cut(s, "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	sig := strings.TrimRight(digits, "0")
	if strings.Trim(sig, "0") == "" {
		return 0 // zero has no decimals, however it is written ("0E-7")
	}
	dec := len(frac) - (len(digits) - len(sig)) // decimals of the significant digits
	if hasExp {
		e, err := strconv.Atoi(strings.TrimPrefix(exp, "+"))
		if err != nil {
			return dec
		}
		dec -= e
	}
	return max(dec, 0)
}

func isJSONNumber(s string) bool {
	if s == "" {
		return false
	}
	return json.Valid([]byte(s)) && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))
}

func numberFrom(v jvalue) (string, error) {
	switch v.kind {
	case 'n':
		return string(v.num), nil
	case 's':
		s := strings.TrimSpace(v.str)
		if s == "" {
			return "", nil
		}
		if !isJSONNumber(s) {
			return "", fmt.Errorf("%q is not a number", clip(v.str))
		}
		return s, nil
	case 'z':
		return "", nil
	}
	return "", fmt.Errorf("must be a number, got %s", kindName(v.kind))
}

// clip shortens a received value quoted in an error message.
func clip(s string) string {
	const n = 40
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func kindName(k byte) string {
	switch k {
	case 'o':
		return "an object"
	case 'a':
		return "an array"
	case 's':
		return "a string"
	case 'n':
		return "a number"
	case 'b':
		return "a boolean"
	}
	return "null"
}

var numberType = reflect.TypeOf(Number(""))

// validator is implemented by wire structs with checks beyond their tags.
// path is the struct's own path ("" at the top level).
type validator interface {
	validate(path string) error
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

type fieldRule struct {
	name     string
	aliases  []string
	required bool
	max      int // characters; 0 = unlimited
	maxItems int
}

func parseRule(f reflect.StructField) (fieldRule, bool) {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" || !f.IsExported() {
		return fieldRule{}, false
	}
	if name == "" {
		name = f.Name
	}
	r := fieldRule{name: name}
	for _, opt := range strings.Split(f.Tag.Get("kg"), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(opt), "=")
		switch k {
		case "req":
			r.required = true
		case "max":
			r.max, _ = strconv.Atoi(v)
		case "maxitems":
			r.maxItems, _ = strconv.Atoi(v)
		case "alias":
			r.aliases = append(r.aliases, strings.Split(v, "|")...)
		}
	}
	return r, true
}

// decodeLenient decodes a JSON object into the struct pointed to by dst,
// leniently: unknown members are ignored, strings and numbers stand in for
// each other, objects and arrays may arrive as JSON text in a string, and
// member names match exactly, then by alias, then case-insensitively.
// Required members (a blank string counts as absent), maximum lengths and
// validators are checked; every failure is a *FieldError naming the member.
func decodeLenient(data []byte, dst any) error {
	v, err := parseBody(data)
	if err != nil {
		return err
	}
	return decodeLenientValue(v, dst)
}

// parseBody parses a request body that must be a JSON object.
func parseBody(data []byte) (jvalue, error) {
	v, err := parseJSON(data)
	if err != nil {
		return jvalue{}, &FieldError{Field: "body", Reason: "is not valid JSON: " + err.Error()}
	}
	if v.kind != 'o' {
		return jvalue{}, &FieldError{Field: "body", Reason: "must be a JSON object, got " + kindName(v.kind)}
	}
	return v, nil
}

func decodeLenientValue(v jvalue, dst any) error {
	return assignValue("", v, reflect.ValueOf(dst).Elem())
}

func findMember(obj []jmember, r fieldRule) (jvalue, bool) {
	// The last duplicate already won in parseJSON; exact name first.
	for _, m := range obj {
		if m.key == r.name {
			return m.val, true
		}
	}
	for _, a := range r.aliases {
		for _, m := range obj {
			if m.key == a {
				return m.val, true
			}
		}
	}
	for _, m := range obj {
		if strings.EqualFold(m.key, r.name) {
			return m.val, true
		}
	}
	return jvalue{}, false
}

func assignStruct(path string, v jvalue, rv reflect.Value) error {
	t := rv.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		rule, ok := parseRule(f)
		if !ok {
			continue
		}
		fpath := joinPath(path, rule.name)
		mv, found := findMember(v.obj, rule)
		if found && mv.kind == 's' && strings.TrimSpace(mv.str) == "" && emptyMeansAbsent(f.Type) {
			found = false // "" for an integer, boolean or object member means it was not sent
		}
		if !found || mv.kind == 'z' {
			if rule.required {
				return &FieldError{Field: fpath, Reason: "is required"}
			}
			continue
		}
		fv := rv.Field(i)
		if err := assignValue(fpath, mv, fv); err != nil {
			return err
		}
		switch fv.Kind() {
		case reflect.String:
			// A blank value is no value: " " must not become an
			// identifier (an idempotency key, an instance ID).
			if rule.required && strings.TrimSpace(fv.String()) == "" {
				return &FieldError{Field: fpath, Reason: "is required"}
			}
			// Valid JSON and UTF-8, but no identifier has one, and no
			// PostgreSQL text can hold it.
			if strings.IndexByte(fv.String(), 0) >= 0 {
				return &FieldError{Field: fpath, Reason: `contains a NUL character (\u0000)`}
			}
			if rule.max > 0 {
				if n := utf8.RuneCountInString(fv.String()); n > rule.max {
					return &FieldError{Field: fpath, Reason: fmt.Sprintf("is %d characters, at most %d allowed", n, rule.max)}
				}
			}
		case reflect.Slice:
			if rule.maxItems > 0 && fv.Len() > rule.maxItems {
				return &FieldError{Field: fpath, Reason: fmt.Sprintf("has %d entries, at most %d allowed", fv.Len(), rule.maxItems)}
			}
		}
	}
	if val, ok := rv.Addr().Interface().(validator); ok {
		return val.validate(path)
	}
	return nil
}

func emptyMeansAbsent(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Bool, reflect.Struct, reflect.Pointer:
		return true
	}
	return false
}

// jvalueDecoder is implemented by wire types that decode themselves from the
// parsed JSON (RawProductInfo).
type jvalueDecoder interface {
	decodeJValue(path string, v jvalue) error
}

func assignValue(path string, v jvalue, rv reflect.Value) error {
	if rv.CanAddr() {
		if d, ok := rv.Addr().Interface().(jvalueDecoder); ok {
			return d.decodeJValue(path, v)
		}
	}
	if rv.Type() == numberType {
		s, err := numberFrom(v)
		if err != nil {
			return &FieldError{Field: path, Reason: err.Error()}
		}
		rv.SetString(s)
		return nil
	}
	switch rv.Kind() {
	case reflect.String:
		switch v.kind {
		case 's':
			rv.SetString(v.str)
		case 'n':
			rv.SetString(string(v.num))
		case 'b':
			rv.SetString(strconv.FormatBool(v.b))
		case 'z':
		default:
			return &FieldError{Field: path, Reason: "must be a string, got " + kindName(v.kind)}
		}
		return nil
	case reflect.Int, reflect.Int32, reflect.Int64:
		var s string
		switch v.kind {
		case 'n':
			s = string(v.num)
		case 's':
			s = strings.TrimSpace(v.str)
		default:
			return &FieldError{Field: path, Reason: "must be an integer, got " + kindName(v.kind)}
		}
		n, err := strconv.ParseInt(s, 10, rv.Type().Bits())
		if err != nil {
			return &FieldError{Field: path, Reason: fmt.Sprintf("%q is not an integer", clip(s))}
		}
		rv.SetInt(n)
		return nil
	case reflect.Bool:
		switch {
		case v.kind == 'b':
			rv.SetBool(v.b)
		case v.kind == 's' && strings.EqualFold(strings.TrimSpace(v.str), "true"):
			rv.SetBool(true)
		case v.kind == 's' && strings.EqualFold(strings.TrimSpace(v.str), "false"):
			rv.SetBool(false)
		default:
			return &FieldError{Field: path, Reason: "must be true or false"}
		}
		return nil
	case reflect.Pointer:
		if v.kind == 'z' {
			return nil
		}
		p := reflect.New(rv.Type().Elem())
		if err := assignValue(path, v, p.Elem()); err != nil {
			return err
		}
		rv.Set(p)
		return nil
	case reflect.Struct:
		if v.kind == 'a' && len(v.arr) == 1 {
			v = v.arr[0] // a one-element list where one object is expected
		}
		if v.kind == 's' {
			inner, err := parseRelaxedJSON(v.str)
			if err != nil || inner.kind != 'o' {
				return &FieldError{Field: path, Reason: "must be an object (or a string holding a JSON object)"}
			}
			v = inner
		}
		if v.kind != 'o' {
			return &FieldError{Field: path, Reason: "must be an object, got " + kindName(v.kind)}
		}
		return assignStruct(path, v, rv)
	case reflect.Slice:
		if v.kind == 's' {
			if strings.TrimSpace(v.str) == "" {
				rv.Set(reflect.MakeSlice(rv.Type(), 0, 0)) // "" is an empty list
				return nil
			}
			inner, err := parseRelaxedJSON(v.str)
			if err != nil || inner.kind != 'a' {
				return &FieldError{Field: path, Reason: "must be an array (or a string holding a JSON array)"}
			}
			v = inner
		}
		if v.kind != 'a' {
			return &FieldError{Field: path, Reason: "must be an array, got " + kindName(v.kind)}
		}
		s := reflect.MakeSlice(rv.Type(), len(v.arr), len(v.arr))
		for i, e := range v.arr {
			if err := assignValue(fmt.Sprintf("%s[%d]", path, i), e, s.Index(i)); err != nil {
				return err
			}
		}
		rv.Set(s)
		return nil
	}
	return &FieldError{Field: path, Reason: "has an unsupported type"}
}

// parseRelaxedJSON parses JSON text found inside a string member. Besides
// strict JSON it tolerates unquoted member names ({orgCode:"1"}), as in
// KooGallery's allOrgSync example.
func parseRelaxedJSON(s string) (jvalue, error) {
	v, err := parseJSON([]byte(s))
	if err == nil {
		return v, nil
	}
	quoted, qerr := quoteBareKeys(s)
	if qerr != nil {
		return jvalue{}, err
	}
	return parseJSON(quoted)
}

// quoteBareKeys wraps identifiers that are followed by ':' outside string
// literals in double quotes.
func quoteBareKeys(s string) ([]byte, error) {
	var out bytes.Buffer
	inStr := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if inStr {
			out.WriteByte(c)
			if c == '\\' && i+1 < len(s) {
				i++
				out.WriteByte(s[i])
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		if c == '"' {
			inStr = true
			out.WriteByte(c)
			continue
		}
		if isIdentStart(c) {
			j := i
			for j < len(s) && isIdentPart(s[j]) {
				j++
			}
			k := j
			for k < len(s) && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r') {
				k++
			}
			if k < len(s) && s[k] == ':' {
				out.WriteByte('"')
				out.WriteString(s[i:j])
				out.WriteByte('"')
			} else {
				out.WriteString(s[i:j])
			}
			i = j - 1
			continue
		}
		out.WriteByte(c)
	}
	if inStr {
		return nil, fmt.Errorf("unterminated string")
	}
	return out.Bytes(), nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }
