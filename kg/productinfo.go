package kg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Forms of changeInstanceCheck's productInfo (RawProductInfo.Form).
const (
	ProductInfoObject       = "object"        // {…}
	ProductInfoArray        = "array"         // [{…}, …]
	ProductInfoStringObject = "string_object" // "{…}"
	ProductInfoStringArray  = "string_array"  // "[{…}, …]"
)

// RawProductInfo is changeInstanceCheck's productInfo as KooGallery sent it.
// Its structure is not documented (saas-v2.md §4.7), so nothing inside it is
// validated, converted or dropped: JSON is the object, or the list of one or
// more objects, compact, with every member, member order, member type and
// number text as received. When productInfo arrived as a string, JSON is the
// JSON that string held. (A member repeated within one object keeps its last
// value; insignificant whitespace is not kept.) Form says which form arrived.
type RawProductInfo struct {
	JSON json.RawMessage
	Form string // ProductInfoObject, ProductInfoArray, ProductInfoStringObject or ProductInfoStringArray
}

// MarshalJSON writes JSON (null when empty).
func (p RawProductInfo) MarshalJSON() ([]byte, error) {
	if len(p.JSON) == 0 {
		return []byte("null"), nil
	}
	return p.JSON, nil
}

// UnmarshalJSON accepts what DecodeRequest accepts: an object, a list of one
// or more objects, or a string holding either. null leaves p empty.
func (p *RawProductInfo) UnmarshalJSON(b []byte) error {
	v, err := parseJSON(b)
	if err != nil {
		return err
	}
	if v.kind == 'z' {
		*p = RawProductInfo{}
		return nil
	}
	return p.decodeJValue("productInfo", v)
}

// decodeJValue implements jvalueDecoder for the lenient decoder.
func (p *RawProductInfo) decodeJValue(path string, v jvalue) error {
	const want = "must be an object or a list of objects (or a string holding one)"
	str := false
	if v.kind == 's' {
		inner, err := parseRelaxedJSON(v.str)
		if err != nil {
			return &FieldError{Field: path, Reason: want + ": the string is not JSON"}
		}
		v, str = inner, true
	}
	var form string
	switch v.kind {
	case 'o':
		form = ProductInfoObject
		if str {
			form = ProductInfoStringObject
		}
	case 'a':
		if len(v.arr) == 0 {
			return &FieldError{Field: path, Reason: "is an empty list: it must name the target product"}
		}
		for i, e := range v.arr {
			if e.kind != 'o' {
				return &FieldError{Field: fmt.Sprintf("%s[%d]", path, i), Reason: "must be an object, got " + kindName(e.kind)}
			}
		}
		form = ProductInfoArray
		if str {
			form = ProductInfoStringArray
		}
	default:
		return &FieldError{Field: path, Reason: want + ", got " + kindName(v.kind)}
	}
	var buf bytes.Buffer
	writeJSON(&buf, v, jsonStyle{})
	*p = RawProductInfo{JSON: buf.Bytes(), Form: form}
	return nil
}

// Products reads the products productInfo names (one per object) into the
// typed ProductInfo, best effort and never failing: productId, skuCode and
// productName take a string, number or boolean member as its text (other
// types are left empty); linearValue takes a number or a string holding one
// ("10GB" is left empty). Every other member is only in JSON.
func (p RawProductInfo) Products() []ProductInfo {
	if len(p.JSON) == 0 {
		return nil
	}
	v, err := parseJSON(p.JSON)
	if err != nil {
		return nil
	}
	objs := []jvalue{v}
	if v.kind == 'a' {
		objs = v.arr
	}
	var out []ProductInfo
	for _, o := range objs {
		if o.kind != 'o' {
			continue
		}
		text := func(name string) string {
			m, ok := findMember(o.obj, fieldRule{name: name})
			if !ok {
				return ""
			}
			switch m.kind {
			case 's':
				return m.str
			case 'n':
				return string(m.num)
			case 'b':
				return strconv.FormatBool(m.b)
			}
			return ""
		}
		pi := ProductInfo{ProductID: text("productId"), SKUCode: text("skuCode"), ProductName: text("productName")}
		if m, ok := findMember(o.obj, fieldRule{name: "linearValue"}); ok {
			if n, err := numberFrom(m); err == nil {
				pi.LinearValue = Number(n)
			}
		}
		out = append(out, pi)
	}
	return out
}
