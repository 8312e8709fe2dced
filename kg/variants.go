package kg

import (
	"reflect"
	"strings"
)

// DecodeRequestVariants is DecodeRequest, and also names the documented
// readings the request used where the documents allow several (README policy:
// every accepted variant is counted and logged, so that an operator sees which
// one the real marketplace sends). The names form a bounded set:
//
//	testFlag_absent, testFlag_0, testFlag_1
//	member_case_<name>        a member matched by name case-insensitively (or by alias)
//	number_as_string_<name>   a number (or boolean) where the documents show a string
//	string_as_number_<name>   a string where the documents show a number or boolean
//	expireTime_14, expireTime_17
//	status_not_upper_case     updateInstanceStatus with freeze/Freeze…
//
// The variants of a request that does not decode are not reported.
func DecodeRequestVariants(body []byte) (Request, []string, error) {
	v, err := parseBody(body)
	if err != nil {
		return nil, nil, err
	}
	req, err := decodeRequest(v)
	if err != nil {
		return nil, nil, err
	}
	return req, requestVariants(v, req), nil
}

func requestVariants(v jvalue, req Request) []string {
	var out []string
	rv := reflect.ValueOf(req).Elem()
	t := rv.Type()
	testFlag, status := "testFlag_absent", ""
	for i := 0; i < t.NumField(); i++ {
		rule, ok := parseRule(t.Field(i))
		if !ok {
			continue
		}
		exact := false
		for _, m := range v.obj {
			if m.key == rule.name {
				exact = true
				break
			}
		}
		mv, found := findMember(v.obj, rule)
		if !found {
			continue
		}
		if !exact {
			out = append(out, "member_case_"+rule.name)
		}
		if rule.name == "status" {
			status = strings.TrimSpace(scalarText(mv))
		}
		if rule.name == "testFlag" {
			switch strings.TrimSpace(scalarText(mv)) {
			case TestFlagDebug:
				testFlag = "testFlag_1"
			case TestFlagReal:
				testFlag = "testFlag_0"
			}
		}
		switch k := t.Field(i).Type.Kind(); {
		case k == reflect.String && (mv.kind == 'n' || mv.kind == 'b'):
			out = append(out, "number_as_string_"+rule.name)
		case (k == reflect.Int || k == reflect.Int32 || k == reflect.Int64 || k == reflect.Bool) && mv.kind == 's':
			out = append(out, "string_as_number_"+rule.name)
		}
	}
	out = append(out, testFlag)
	switch x := req.(type) {
	case *RefreshInstanceRequest:
		switch len(strings.TrimSpace(x.ExpireTime)) {
		case 14:
			out = append(out, "expireTime_14")
		case 17:
			out = append(out, "expireTime_17")
		}
	case *UpdateInstanceStatusRequest:
		if status != strings.ToUpper(status) {
			out = append(out, "status_not_upper_case")
		}
	}
	return out
}

// scalarText is a scalar member's text (a string's value, a number's digits).
func scalarText(v jvalue) string {
	switch v.kind {
	case 's':
		return v.str
	case 'n':
		return string(v.num)
	}
	return ""
}

// SignatureHexCase says how a request's hex signature is written: "lower",
// "upper" or "mixed" (every case is accepted).
func SignatureHexCase(sig string) string {
	lower, upper := false, false
	for _, c := range sig {
		switch {
		case c >= 'a' && c <= 'f':
			lower = true
		case c >= 'A' && c <= 'F':
			upper = true
		}
	}
	switch {
	case upper && lower:
		return "mixed"
	case upper:
		return "upper"
	}
	return "lower"
}
