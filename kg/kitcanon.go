package kg

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"unicode/utf8"
)

// kitSortedBody reproduces Huawei's kit sample canonicalisation: the body read
// into a TreeMap (top-level keys sorted, null members dropped), written back
// by Jackson (compact; nested members in received order unless deep; a
// repeated key keeps its first position and takes its last value, like the
// LinkedHashMap Jackson reads a nested object into).
//
// It works on the bytes without building a tree: the body is validated once
// (json.Valid, then the nesting bound of parseJSON), then walked, each value
// written as it is met. Memory is the output (about the body's size) plus, per
// nesting level, the members of the object being written; a body of tiny
// values ([0,0,0,…]) costs no more than one of long strings. kitSortedBody
// returns the bytes, and fails exactly when, the tree-based reading of
// parseJSON + writeJSON would (FuzzKitSortedBody checks this).
func kitSortedBody(data []byte, deep bool) ([]byte, error) {
	if err := checkKitObject(data); err != nil {
		return nil, err
	}
	return writeKitSorted(data, deep), nil
}

// checkKitObject validates data for writeKitSorted: one JSON object (surrounding
// whitespace allowed) with no value deeper than parseJSON accepts.
func checkKitObject(data []byte) error {
	if !json.Valid(data) {
		return errors.New("body is not valid JSON")
	}
	if tooDeep(data) {
		return errors.New("JSON nested too deeply")
	}
	if data[skipWS(data, 0)] != '{' {
		return errors.New("body is not a JSON object")
	}
	return nil
}

// writeKitSorted is kitSortedBody on data that checkKitObject accepted.
func writeKitSorted(data []byte, deep bool) []byte {
	i := skipWS(data, 0)
	c := kitCanon{data: data, deep: deep}
	c.out = *bytes.NewBuffer(make([]byte, 0, len(data))) // the output is about as long as the input
	ms, _ := c.members(i, 0)
	// TreeMap: sorted, a repeated key takes its last value; then the nulls go.
	slices.SortStableFunc(ms, cmpMemberKey)
	c.out.WriteByte('{')
	n := 0
	for k := range ms {
		if k+1 < len(ms) && ms[k+1].key == ms[k].key {
			continue // a later duplicate wins
		}
		m := ms[k]
		if string(data[m.vs:m.ve]) == "null" {
			continue
		}
		if n > 0 {
			c.out.WriteByte(',')
		}
		n++
		writeJSONString(&c.out, m.key)
		c.out.WriteByte(':')
		c.value(m.vs, 1)
	}
	c.out.WriteByte('}')
	return c.out.Bytes()
}

// kitCanon is one walk of kitSortedBody over valid JSON.
type kitCanon struct {
	data    []byte
	deep    bool
	out     bytes.Buffer
	scratch [maxJSONDepth + 2][]canonMember // members of the object being written, per depth
}

// canonMember is an object member: its decoded key and the span of its value.
type canonMember struct {
	key    string
	vs, ve int
	order  int // position in the object, for the first-position rule
	drop   bool
}

func cmpMemberKey(a, b canonMember) int {
	switch {
	case a.key == b.key:
		return 0
	case javaLess(a.key, b.key):
		return -1
	}
	return 1
}

// members lists the members of the object at data[i] == '{' (at the given
// depth) in received order, reusing that depth's scratch, and returns them
// with the index just past the object.
func (c *kitCanon) members(i, depth int) ([]canonMember, int) {
	ms := c.scratch[depth][:0]
	d := c.data
	i = skipWS(d, i+1)
	for d[i] != '}' {
		ke := skipString(d, i)
		key := decodeString(d[i:ke])
		i = skipWS(d, ke)
		i = skipWS(d, i+1) // ':'
		ve := skipValue(d, i)
		ms = append(ms, canonMember{key: key, vs: i, ve: ve, order: len(ms)})
		i = skipWS(d, ve)
		if d[i] == ',' {
			i = skipWS(d, i+1)
		}
	}
	c.scratch[depth] = ms
	return ms, i + 1
}

// value writes the value at data[i] (i at its first byte, a value at the
// given depth) and returns the index just past it.
func (c *kitCanon) value(i, depth int) int {
	d := c.data
	switch d[i] {
	case '{':
		ms, end := c.members(i, depth)
		c.object(ms, depth)
		return end
	case '[':
		c.out.WriteByte('[')
		i = skipWS(d, i+1)
		for n := 0; d[i] != ']'; n++ {
			if n > 0 {
				c.out.WriteByte(',')
			}
			i = skipWS(d, c.value(i, depth+1))
			if d[i] == ',' {
				i = skipWS(d, i+1)
			}
		}
		c.out.WriteByte(']')
		return i + 1
	case '"':
		end := skipString(d, i)
		s := d[i:end]
		if plainString(s) {
			c.out.Write(s) // decodes to itself and needs no escaping
		} else {
			writeJSONString(&c.out, decodeString(s))
		}
		return end
	}
	end := skipScalar(d, i) // number, true, false, null
	if d[i] == '-' || d[i] >= '0' && d[i] <= '9' {
		c.out.WriteString(javaNumber(string(d[i:end])))
	} else {
		c.out.Write(d[i:end])
	}
	return end
}

// object writes a nested object's members: sorted when deep, else in received
// order; either way a repeated key keeps its first position and takes its
// last value.
func (c *kitCanon) object(ms []canonMember, depth int) {
	slices.SortStableFunc(ms, cmpMemberKey)
	for k := 0; k < len(ms); {
		run := k + 1
		for run < len(ms) && ms[run].key == ms[k].key {
			run++
		}
		last := ms[run-1]
		ms[k].vs, ms[k].ve = last.vs, last.ve
		for j := k + 1; j < run; j++ {
			ms[j].drop = true
		}
		k = run
	}
	if !c.deep {
		slices.SortFunc(ms, func(a, b canonMember) int { return a.order - b.order })
	}
	c.out.WriteByte('{')
	n := 0
	for _, m := range ms {
		if m.drop {
			continue
		}
		if n > 0 {
			c.out.WriteByte(',')
		}
		n++
		writeJSONString(&c.out, m.key)
		c.out.WriteByte(':')
		c.value(m.vs, depth+1)
	}
	c.out.WriteByte('}')
}

// The helpers below assume valid JSON (json.Valid has passed).

func skipWS(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at d[i] == '"'.
func skipString(d []byte, i int) int {
	i++
	for {
		q := bytes.IndexByte(d[i:], '"')
		j := i + q
		bs := 0
		for k := j - 1; k >= i && d[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			return j + 1
		}
		i = j + 1
	}
}

// skipScalar returns the index just past the number or literal at d[i].
func skipScalar(d []byte, i int) int {
	for i < len(d) {
		switch d[i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// skipValue returns the index just past the value at d[i].
func skipValue(d []byte, i int) int {
	switch d[i] {
	case '"':
		return skipString(d, i)
	case '{', '[':
		open := 0
		for i < len(d) {
			switch d[i] {
			case '"':
				i = skipString(d, i)
				continue
			case '{', '[':
				open++
			case '}', ']':
				open--
				if open == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	return skipScalar(d, i)
}

// plainString reports whether the quoted JSON string s decodes to its own
// contents: no escape and valid UTF-8 (valid JSON has no raw control
// characters or quotes inside a string).
func plainString(s []byte) bool {
	in := s[1 : len(s)-1]
	return bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in)
}

// decodeString decodes the quoted JSON string s exactly as encoding/json does
// for parseJSON (invalid UTF-8 and lone surrogates become U+FFFD).
func decodeString(s []byte) string {
	if plainString(s) {
		return string(s[1 : len(s)-1])
	}
	var v string
	if err := json.Unmarshal(s, &v); err != nil { // cannot happen after json.Valid
		return string(s[1 : len(s)-1])
	}
	return v
}

// tooDeep reports whether valid JSON has a value deeper than parseJSON
// accepts: the top-level value is at depth 0, the elements of a container at
// depth n are at n+1, and parseJSON fails on any value beyond maxJSONDepth
// (even one a later duplicate key overrides).
func tooDeep(d []byte) bool {
	open := 0
	for i := 0; i < len(d); i++ {
		switch d[i] {
		case '"':
			i = skipString(d, i) - 1
		case '{', '[':
			open++ // its elements are at depth open
			if open > maxJSONDepth {
				j := skipWS(d, i+1)
				if d[j] != '}' && d[j] != ']' {
					return true
				}
			}
		case '}', ']':
			open--
		}
	}
	return false
}
