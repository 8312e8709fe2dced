package kg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// jvalue is a parsed JSON value that keeps object member order and number text.
type jvalue struct {
	kind byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	str  string
	num  json.Number
	b    bool
	obj  []jmember
	arr  []jvalue
}

type jmember struct {
	key string
	val jvalue
}

const maxJSONDepth = 64

// parseJSON parses exactly one JSON value (trailing whitespace allowed).
func parseJSON(data []byte) (jvalue, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return jvalue{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return jvalue{}, errors.New("trailing data after JSON value")
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (jvalue, error) {
	if depth > maxJSONDepth {
		return jvalue{}, errors.New("JSON nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return jvalue{}, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			v := jvalue{kind: 'o'}
			index := map[string]int{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return jvalue{}, err
				}
				key, ok := kt.(string)
				if !ok {
					return jvalue{}, errors.New("object key is not a string")
				}
				val, err := parseValue(dec, depth+1)
				if err != nil {
					return jvalue{}, err
				}
				// Like Java's LinkedHashMap: a repeated key keeps its first
				// position and takes the last value.
				if i, dup := index[key]; dup {
					v.obj[i].val = val
					continue
				}
				index[key] = len(v.obj)
				v.obj = append(v.obj, jmember{key, val})
			}
			if _, err := dec.Token(); err != nil {
				return jvalue{}, err
			}
			return v, nil
		case '[':
			v := jvalue{kind: 'a'}
			for dec.More() {
				val, err := parseValue(dec, depth+1)
				if err != nil {
					return jvalue{}, err
				}
				v.arr = append(v.arr, val)
			}
			if _, err := dec.Token(); err != nil {
				return jvalue{}, err
			}
			return v, nil
		}
		return jvalue{}, fmt.Errorf("unexpected %v", t)
	case string:
		return jvalue{kind: 's', str: t}, nil
	case json.Number:
		return jvalue{kind: 'n', num: t}, nil
	case bool:
		return jvalue{kind: 'b', b: t}, nil
	case nil:
		return jvalue{kind: 'z'}, nil
	}
	return jvalue{}, fmt.Errorf("unexpected token %v", tok)
}

// javaLess orders strings like Java's String.compareTo (UTF-16 code units),
// which is what a TreeMap uses.
func javaLess(a, b string) bool {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			ua, ub := utf16Units(ra), utf16Units(rb)
			for i := 0; i < len(ua) && i < len(ub); i++ {
				if ua[i] != ub[i] {
					return ua[i] < ub[i]
				}
			}
			return len(ua) < len(ub)
		}
		a, b = a[na:], b[nb:]
	}
	return a == "" && b != ""
}

func utf16Units(r rune) []uint16 {
	if r >= 0x10000 {
		r1, r2 := utf16.EncodeRune(r)
		return []uint16{uint16(r1), uint16(r2)}
	}
	return []uint16{uint16(r)}
}

// jsonStyle selects how values are written back.
type jsonStyle struct {
	sortNested bool // sort the members of nested objects too
	java       bool // Jackson conventions: floats as Java Double.toString, no escaping beyond the minimum
}

func writeJSON(buf *bytes.Buffer, v jvalue, st jsonStyle) {
	switch v.kind {
	case 'o':
		members := v.obj
		if st.sortNested {
			members = sortedMembers(members)
		}
		buf.WriteByte('{')
		for i, m := range members {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(buf, m.key)
			buf.WriteByte(':')
			writeJSON(buf, m.val, st)
		}
		buf.WriteByte('}')
	case 'a':
		buf.WriteByte('[')
		for i, e := range v.arr {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSON(buf, e, st)
		}
		buf.WriteByte(']')
	case 's':
		writeJSONString(buf, v.str)
	case 'n':
		if st.java {
			buf.WriteString(javaNumber(string(v.num)))
		} else {
			buf.WriteString(string(v.num))
		}
	case 'b':
		if v.b {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	default:
		buf.WriteString("null")
	}
}

func sortedMembers(ms []jmember) []jmember {
	out := append([]jmember(nil), ms...)
	sort.SliceStable(out, func(i, j int) bool { return javaLess(out[i].key, out[j].key) })
	return out
}

// writeJSONString writes s with the minimal escaping Jackson uses: '"', '\\'
// and control characters; everything else, non-ASCII included, is raw UTF-8.
func writeJSONString(buf *bytes.Buffer, s string) {
	const hexDigits = "0123456789ABCDEF"
	buf.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\b':
			buf.WriteString(`\b`)
		case '\f':
			buf.WriteString(`\f`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			if c < 0x20 {
				buf.WriteString(`\u00`)
				buf.WriteByte(hexDigits[c>>4])
				buf.WriteByte(hexDigits[c&15])
			} else {
				buf.WriteByte(c)
			}
		}
	}
	buf.WriteByte('"')
}

// javaNumber renders a JSON number the way Jackson re-serializes it after
// reading it into a Java Map: integers keep their digits, other numbers become
// a Double printed with Double.toString.
func javaNumber(text string) string {
	if !strings.ContainsAny(text, ".eE") {
		if text == "-0" {
			return "0"
		}
		return text
	}
	d, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsInf(d, 0) || math.IsNaN(d) {
		return text
	}
	if d == 0 {
		if math.Signbit(d) {
			return "-0.0"
		}
		return "0.0"
	}
	abs := math.Abs(d)
	if abs >= 1e-3 && abs < 1e7 {
		s := strconv.FormatFloat(d, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	s := strconv.FormatFloat(d, 'e', -1, 64) // e.g. 1.2345e+07
	mant, exp, _ := strings.Cut(s, "e")
	if !strings.Contains(mant, ".") {
		mant += ".0"
	}
	neg := strings.HasPrefix(exp, "-")
	exp = strings.TrimLeft(exp, "+-")
	exp = strings.TrimLeft(exp, "0")
	if exp == "" {
		exp = "0"
	}
	if neg {
		exp = "-" + exp
	}
	return mant + "E" + exp
}

// CanonicalJSON re-serializes a JSON document compactly with the keys of every
// object sorted (Java String order), strings minimally escaped (non-ASCII raw)
// and number text kept as written. It is the "naturally sorted" body of the
// usage-push signature: sign and send exactly these bytes.
func CanonicalJSON(data []byte) ([]byte, error) {
	v, err := parseJSON(data)
	if err != nil {
		return nil, fmt.Errorf("kg: canonical JSON: %w", err)
	}
	var buf bytes.Buffer
	writeJSON(&buf, v, jsonStyle{sortNested: true})
	return buf.Bytes(), nil
}

// MarshalASCII marshals v like json.Marshal, without HTML escaping, and with
// every non-ASCII character written as a \uXXXX escape (surrogate pairs above
// U+FFFF), as the queryInstance memo requires (saas-v2.md §4.2). Use it for
// whole responses.
func MarshalASCII(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return EscapeNonASCII(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// EscapeNonASCII rewrites every non-ASCII character of a JSON document as a
// \uXXXX escape. Non-ASCII can only occur inside strings in valid JSON, so the
// result is equivalent JSON in pure ASCII.
func EscapeNonASCII(doc []byte) []byte {
	const hexDigits = "0123456789abcdef"
	ascii := true
	for _, c := range doc {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return doc
	}
	out := make([]byte, 0, len(doc)+len(doc)/2)
	writeU := func(u uint16) {
		out = append(out, '\\', 'u', hexDigits[u>>12&15], hexDigits[u>>8&15], hexDigits[u>>4&15], hexDigits[u&15])
	}
	for i := 0; i < len(doc); {
		c := doc[i]
		if c < 0x80 {
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(doc[i:])
		i += n
		for _, u := range utf16Units(r) { // invalid bytes become U+FFFD
			writeU(u)
		}
	}
	return out
}
