package kit

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/soukhq/souk/kg"
)

func fieldOf(t *testing.T, err error) string {
	t.Helper()
	var fe *kg.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *kg.FieldError", err, err)
	}
	return fe.Field
}

// decodes judges a table case's decoding error: with field set, err must be
// a *kg.FieldError naming it (and decodes is false); otherwise err must be nil.
func decodes(t *testing.T, err error, field string) bool {
	t.Helper()
	if field != "" {
		if got := fieldOf(t, err); got != field {
			t.Fatalf("field %q, want %q (%v)", got, field, err)
		}
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func TestDecodeTenantSync(t *testing.T) {
	tests := []struct {
		name, body string
		field      string // "" = valid
		check      func(*TenantSync) bool
	}{
		{"doc example", `{"instanceId":"huaiweitest123456","orderId":"CS1906666666ABCDE","tenantId":"68cbc86880d92f36422fa0e","tenantCode":"huawei","name":"huaiweitest","domainName":"https://example.tenantaccount.com","flag":1,"testFlag":0,"timeStamp":"20220413093539534"}`, "",
			func(r *TenantSync) bool {
				return r.TenantID == "68cbc86880d92f36422fa0e" && r.Flag == FlagAdd && !r.TestFlag && r.DomainName == "https://example.tenantaccount.com"
			}},
		{"strings for numbers", `{"tenantId":"t","tenantCode":"c","name":"n","domainName":"https://d.example.com/","flag":"2","testFlag":"1"}`, "",
			func(r *TenantSync) bool {
				return r.Flag == FlagModify && r.TestFlag && r.DomainName == "https://d.example.com"
			}},
		{"numeric tenantId", `{"tenantId":12345,"tenantCode":"c","name":"n","domainName":"https://d.example.com","flag":1}`, "",
			func(r *TenantSync) bool { return r.TenantID == "12345" }},
		{"delete needs only the tenant", `{"tenantId":"t","flag":0}`, "", func(r *TenantSync) bool { return r.Flag == FlagDelete }},
		{"modify without tenantCode", `{"tenantId":"t","name":"n","domainName":"https://d.example.com","flag":2}`, "", nil},
		{"null members are absent", `{"tenantId":"t","tenantCode":"c","name":"n","domainName":"https://d.example.com","flag":1,"orderId":null}`, "", nil},
		{"no flag", `{"tenantId":"t","tenantCode":"c","name":"n","domainName":"https://d.example.com"}`, "flag", nil},
		{"flag 3", `{"tenantId":"t","tenantCode":"c","name":"n","domainName":"https://d.example.com","flag":3}`, "flag", nil},
		{"flag text", `{"tenantId":"t","flag":"add"}`, "flag", nil},
		{"add without tenantCode", `{"tenantId":"t","name":"n","domainName":"https://d.example.com","flag":1}`, "tenantCode", nil},
		{"no domain", `{"tenantId":"t","tenantCode":"c","name":"n","flag":1}`, "domainName", nil},
		{"relative domain", `{"tenantId":"t","tenantCode":"c","name":"n","domainName":"example.com","flag":1}`, "domainName", nil},
		{"domain with query", `{"tenantId":"t","tenantCode":"c","name":"n","domainName":"https://e.com/?x=1","flag":1}`, "domainName", nil},
		{"tenantId too long", `{"tenantId":"` + strings.Repeat("x", 65) + `","flag":0}`, "tenantId", nil},
		{"tenantId object", `{"tenantId":{"a":1},"flag":0}`, "tenantId", nil},
		{"not JSON", `tenantId=1`, "body", nil},
		{"truncated", `{"tenantId":"t"`, "body", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeTenantSync([]byte(tc.body))
			if !decodes(t, err, tc.field) {
				return
			}
			if tc.check != nil && !tc.check(r) {
				t.Fatalf("decoded %+v", r)
			}
		})
	}
}

func TestDecodeAuthSync(t *testing.T) {
	tests := []struct {
		name, body string
		field      string
		check      func(*AuthSync) bool
	}{
		{"V2 array", `{"tenantId":"t","appId":"a","flag":1,"currentSyncTime":"20220413093539534","userList":[{"userName":"u1","name":"N","orgCode":"o","role":"admin","enable":"true","employeeType":2,"mobile":"138","email":"a@b.c","workPlace":"SZ","entryDate":"2022-1-2"}]}`, "",
			func(r *AuthSync) bool {
				u := r.Users[0]
				return len(r.Users) == 1 && u.Role == "admin" && u.Enabled && u.EmployeeType == 2 && u.WorkPlace == "SZ" && u.EntryDate == "2022-1-2" && r.CurrentSyncTime == "20220413093539534"
			}},
		{"V1 string with extension", `{"tenantId":"t","appId":"a","flag":2,"userList":"[{\"userName\":\"u1\",\"name\":\"N\",\"role\":\"User\",\"enable\":\"false\",\"extension\":{\"employeeType\":\"3\",\"workPlace\":\"南京\"}}]"}`, "",
			func(r *AuthSync) bool {
				u := r.Users[0]
				return u.Role == "user" && !u.Enabled && u.EmployeeType == 3 && u.WorkPlace == "南京"
			}},
		{"boolean enable", `{"tenantId":"t","appId":"a","flag":1,"userList":[{"userName":"u","name":"n","role":"user","enable":true}]}`, "",
			func(r *AuthSync) bool { return r.Users[0].Enabled }},
		{"cancel needs only userName", `{"tenantId":"t","appId":"a","flag":3,"userList":[{"userName":"u"}]}`, "",
			func(r *AuthSync) bool { return r.Flag == FlagCancel && r.Users[0].UserName == "u" }},
		{"duplicate userName: last wins", `{"tenantId":"t","appId":"a","flag":1,"userList":[{"userName":"u","name":"1","role":"user","enable":"true"},{"userName":"u","name":"2","role":"admin","enable":"true"}]}`, "",
			func(r *AuthSync) bool {
				return len(r.Users) == 1 && r.Users[0].Name == "2" && r.Users[0].Role == "admin"
			}},
		{"no appId", `{"tenantId":"t","flag":1,"userList":[{"userName":"u"}]}`, "appId", nil},
		{"no userList", `{"tenantId":"t","appId":"a","flag":1}`, "userList", nil},
		{"userList object", `{"tenantId":"t","appId":"a","flag":1,"userList":{"userName":"u"}}`, "userList", nil},
		{"userList bad string", `{"tenantId":"t","appId":"a","flag":1,"userList":"not json"}`, "userList", nil},
		{"user not object", `{"tenantId":"t","appId":"a","flag":1,"userList":[1]}`, "userList[0]", nil},
		{"no userName", `{"tenantId":"t","appId":"a","flag":1,"userList":[{"name":"n","role":"user","enable":"true"}]}`, "userList[0].userName", nil},
		{"no name on add", `{"tenantId":"t","appId":"a","flag":1,"userList":[{"userName":"u","role":"user","enable":"true"}]}`, "userList[0].name", nil},
		{"no role", `{"tenantId":"t","appId":"a","flag":2,"userList":[{"userName":"u","name":"n","enable":"true"}]}`, "userList[0].role", nil},
		{"no enable", `{"tenantId":"t","appId":"a","flag":1,"userList":[{"userName":"u","name":"n","role":"user"}]}`, "userList[0].enable", nil},
		{"bad employeeType", `{"tenantId":"t","appId":"a","flag":1,"userList":[{"userName":"u","name":"n","role":"user","enable":"true","employeeType":"x"}]}`, "userList[0].employeeType", nil},
		{"long email", `{"tenantId":"t","appId":"a","flag":1,"userList":[{"userName":"u","name":"n","role":"user","enable":"true","email":"` + strings.Repeat("e", 129) + `"}]}`, "userList[0].email", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeAuthSync([]byte(tc.body))
			if !decodes(t, err, tc.field) {
				return
			}
			if tc.check != nil && !tc.check(r) {
				t.Fatalf("decoded %+v", r)
			}
		})
	}
}

func TestDecodeOrgSyncs(t *testing.T) {
	r, err := DecodeSingleOrgSync([]byte(`{"instanceId":"a","instanceId":"b","tenantId":"t","orgCode":"10000","orgName":"开发部","parentCode":"","flag":1,"testFlag":0,"timeStamp":"20220413093539534"}`))
	if err != nil || r.InstanceID != "b" || r.OrgName != "开发部" || r.ParentCode != "" {
		t.Fatalf("single: %+v %v", r, err)
	}
	if _, err := DecodeSingleOrgSync([]byte(`{"tenantId":"t","orgCode":"1","flag":0}`)); err != nil {
		t.Fatalf("delete without name: %v", err)
	}
	if r, err := DecodeSingleOrgSync([]byte(`{"tenantId":"t","orgCode":"1","orgName":"x","parentCode":"1","flag":1}`)); err != nil || r.ParentCode != "" {
		t.Fatalf("self parent: %+v %v", r, err)
	}
	cases := []struct {
		name, body string
		want       string // codes=names joined
		field      string
	}{
		{"V2 array", `{"tenantId":"t","orgInfoList":[{"orgCode":"1","orgName":"A"},{"orgCode":"2","orgName":"B","parentCode":"1"}]}`, "1=A 2=B<1", ""},
		{"V2 string unquoted keys", `{"tenantId":"t","flag":1,"orgInfoList":"[{orgCode:\"00000001\", orgName:\"产品部\", parentCode:\"265789314\" },{orgCode:\"00000002\", orgName:'a \"q\"', parentCode:\"00000001\"}]"}`, `00000001=产品部<265789314 00000002=a "q"<00000001`, ""},
		{"V1 orgInfo string with name", `{"tenantId":"t","orgInfo":"[{\"orgCode\":\"1\",\"name\":\"A\"}]"}`, "1=A", ""},
		{"OrgName capitalised", `{"tenantId":"t","orgInfoList":[{"orgCode":"1","OrgName":"A"}]}`, "1=A", ""},
		{"empty list", `{"tenantId":"t","orgInfoList":[]}`, "", ""},
		{"missing list", `{"tenantId":"t"}`, "", "orgInfoList"},
		{"missing code", `{"tenantId":"t","orgInfoList":[{"orgName":"A"}]}`, "", "orgInfoList[0].orgCode"},
		{"garbage string", `{"tenantId":"t","orgInfoList":"[{orgCode:}"}`, "", "orgInfoList"},
		{"long name", `{"tenantId":"t","orgInfoList":[{"orgCode":"1","orgName":"` + strings.Repeat("部", 129) + `"}]}`, "", "orgInfoList[0].orgName"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeAllOrgSync([]byte(tc.body))
			if !decodes(t, err, tc.field) {
				return
			}
			var parts []string
			for _, g := range r.Orgs {
				p := g.OrgCode + "=" + g.OrgName
				if g.ParentCode != "" {
					p += "<" + g.ParentCode
				}
				parts = append(parts, p)
			}
			if got := strings.Join(parts, " "); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecodeApplicationSync(t *testing.T) {
	r, err := DecodeApplicationSync([]byte(`{"instanceId":"","tenantId":"t","appId":"a","clientId":"c","clientSecret":"QUJD","flag":1,"testFlag":1}`))
	if err != nil || r.ClientSecret != "QUJD" || !r.TestFlag || r.InstanceID != "" {
		t.Fatalf("%+v %v", r, err)
	}
	for body, field := range map[string]string{
		`{"tenantId":"t","appId":"a","clientSecret":"x","flag":1}`: "clientId",
		`{"tenantId":"t","appId":"a","clientId":"c","flag":2}`:     "clientSecret",
		`{"tenantId":"t","clientId":"c","flag":0}`:                 "appId",
	} {
		_, err := DecodeApplicationSync([]byte(body))
		if got := fieldOf(t, err); got != field {
			t.Errorf("%s: field %q, want %q", body, got, field)
		}
	}
	if _, err := DecodeApplicationSync([]byte(`{"tenantId":"t","appId":"a","flag":0}`)); err != nil {
		t.Errorf("delete without client: %v", err)
	}
}

// checkDecodeErr asserts the contract shared by every decoder: no panic, and
// any error is a *kg.FieldError naming a field (→ 000002).
func checkDecodeErr(t *testing.T, err error) {
	if err == nil {
		return
	}
	var fe *kg.FieldError
	if !errors.As(err, &fe) || fe.Field == "" {
		t.Fatalf("error %v (%T) is not a *kg.FieldError with a field", err, err)
	}
}

func FuzzDecodeTenantSync(f *testing.F) {
	f.Add([]byte(`{"instanceId":"i","orderId":"o","tenantId":"t","tenantCode":"c","name":"n","domainName":"https://example.tenantaccount.com","flag":1,"testFlag":0,"timeStamp":"20220413093539534"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeTenantSync(body)
		checkDecodeErr(t, err)
		if err == nil && (r.TenantID == "" || r.Flag < 0 || r.Flag > FlagModify || (r.Flag != FlagDelete && checkDomain(r.DomainName) != nil)) {
			t.Fatalf("accepted invalid request %+v", r)
		}
	})
}

func FuzzDecodeApplicationSync(f *testing.F) {
	f.Add([]byte(`{"tenantId":"t","appId":"a","clientId":"c","clientSecret":"QUJD","flag":1,"testFlag":0}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeApplicationSync(body)
		checkDecodeErr(t, err)
		if err == nil && (r.AppID == "" || (r.Flag != FlagDelete && (r.ClientID == "" || r.ClientSecret == ""))) {
			t.Fatalf("accepted invalid request %+v", r)
		}
	})
}

func FuzzDecodeAuthSync(f *testing.F) {
	f.Add([]byte(`{"tenantId":"t","appId":"a","flag":1,"userList":[{"userName":"u","name":"n","role":"user","enable":"true"}]}`))
	f.Add([]byte(`{"tenantId":"t","appId":"a","flag":"3","userList":"[{\"userName\":\"u\",\"extension\":{\"employeeType\":\"4\"}}]"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeAuthSync(body)
		checkDecodeErr(t, err)
		if err != nil {
			return
		}
		if len(r.Users) == 0 || len(r.Users) > MaxUsersPerSync {
			t.Fatalf("accepted %d users", len(r.Users))
		}
		seen := map[string]bool{}
		for _, u := range r.Users {
			if strings.TrimSpace(u.UserName) == "" || seen[u.UserName] || !utf8.ValidString(u.UserName) {
				t.Fatalf("bad or duplicate userName %q", u.UserName)
			}
			seen[u.UserName] = true
			if (r.Flag == FlagAdd || r.Flag == FlagModify) && u.Role != "user" && u.Role != "admin" {
				t.Fatalf("accepted role %q", u.Role)
			}
		}
	})
}

func FuzzDecodeSingleOrgSync(f *testing.F) {
	f.Add([]byte(`{"tenantId":"t","orgCode":"10000","orgName":"开发部","parentCode":"","flag":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeSingleOrgSync(body)
		checkDecodeErr(t, err)
		if err == nil && (r.OrgCode == "" || r.ParentCode == r.OrgCode) {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func FuzzDecodeAllOrgSync(f *testing.F) {
	f.Add([]byte(`{"tenantId":"t","orgInfoList":[{"orgCode":"1","orgName":"A"},{"orgCode":"2","orgName":"B","parentCode":"1"}]}`))
	f.Add([]byte(`{"tenantId":"t","orgInfoList":"[{orgCode:\"1\", orgName:'A', parentCode:\"9\"}]"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeAllOrgSync(body)
		checkDecodeErr(t, err)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		flat := make([]Org, 0, len(r.Orgs))
		for _, g := range r.Orgs {
			if g.OrgCode == "" || g.OrgName == "" || seen[g.OrgCode] {
				t.Fatalf("accepted %+v", g)
			}
			seen[g.OrgCode] = true
			flat = append(flat, Org{OrgCode: g.OrgCode, OrgName: g.OrgName, ParentCode: g.ParentCode})
		}
		n := 0
		var walk func([]*Org)
		walk = func(ns []*Org) {
			for _, x := range ns {
				n++
				walk(x.Children)
			}
		}
		walk(BuildTree(flat))
		if n != len(flat) {
			t.Fatalf("tree holds %d of %d departments", n, len(flat))
		}
	})
}
