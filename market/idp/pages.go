package idp

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"strconv"
)

// The pages are plain HTML with inline CSS and no external assets. The only
// script turns the documented hash route (#/portal-login?ind=UNOP&appId=…)
// into a query the server can read, on load and when only the fragment
// changes; it is allowed by its hash in the CSP.
const fragmentScript = `(function(){function go(){var h=location.hash,p="#/portal-login";if(h.indexOf(p)===0){var q=h.slice(p.length);location.replace("/unified-login/portal-login"+(q.charAt(0)==="?"?q:""));}}go();window.addEventListener("hashchange",go);})();`

const pageCSS = `body{font-family:system-ui,sans-serif;background:#f3f4f6;margin:0;color:#111}
main{max-width:360px;margin:8vh auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.15)}
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .2rem;font-size:.9rem}
input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem;border:1px solid #bbb;border-radius:4px}
input[readonly]{background:#eee}button{margin-top:1.2rem;width:100%;padding:.6rem;font-size:1rem;background:#c7000b;color:#fff;border:0;border-radius:4px;cursor:pointer}
.err{color:#b00020;background:#fde8ea;padding:.5rem;border-radius:4px}.muted{color:#666;font-size:.85rem}`

var pageTemplates = template.Must(template.New("pages").Parse(`
{{define "head"}}<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{{.}} · souk</title><style>` + pageCSS + `</style></head><body><main>{{end}}
{{define "script"}}<script>` + fragmentScript + `</script>{{end}}
{{define "login"}}{{template "head" "Sign in"}}{{if .Fragment}}{{template "script"}}{{end}}
<h1>Sign in to your enterprise</h1>
<p class="muted">Unified login of the souk marketplace (KooGallery joint operation).</p>
{{if .Error}}<p class="err" id="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/unified-login/login" autocomplete="on">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="continue" value="{{.Continue}}">
<input type="hidden" name="appId" value="{{.AppID}}">
{{if .TenantFixed}}<input type="hidden" name="tenant_fixed" value="1">{{end}}
<label for="tenant">Enterprise code</label>
<input id="tenant" name="tenant" value="{{.TenantCode}}" required {{if .TenantFixed}}readonly{{end}} autocomplete="organization">
<label for="username">User name</label>
<input id="username" name="username" value="{{.UserName}}" required autocomplete="username" {{if .TenantFixed}}autofocus{{end}}>
<label for="password">Password</label>
<input id="password" name="password" type="password" required autocomplete="current-password">
<button id="submit" type="submit">Sign in</button>
</form></main></body></html>{{end}}
{{define "signedin"}}{{template "head" "Signed in"}}{{if .Fragment}}{{template "script"}}{{end}}
<h1>Signed in</h1><p id="who">You are signed in as <b>{{.UserName}}</b>{{if .Name}} ({{.Name}}){{end}}.</p>
<p><a href="/api/v1/logout">Sign out</a></p></main></body></html>{{end}}
{{define "error"}}{{template "head" .Title}}<h1>{{.Title}}</h1><p class="err" id="error">{{.Message}}</p>
<p><a href="/api/v1/logout">Sign out</a> · <a href="/unified-login/">Unified login</a></p></main></body></html>{{end}}
`))

type loginView struct {
	CSRF        string
	Continue    string
	AppID       string
	TenantCode  string
	TenantFixed bool
	UserName    string
	Error       string
	Fragment    bool // serve the hash-route script
}

type signedInView struct {
	UserName, Name string
	Fragment       bool
}

type errorView struct{ Title, Message string }

// loginPage renders the login form, (re)issuing the CSRF cookie.
func (p *IdP) loginPage(w http.ResponseWriter, r *http.Request, status int, v loginView) {
	tok := ""
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 && len(c.Value) <= 64 {
		tok = c.Value
	} else {
		s, err := NewSecret()
		if err != nil {
			p.internal(w, r, "csrf", err)
			return
		}
		tok = s
	}
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: "/unified-login/", HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteStrictMode})
	v.CSRF = tok
	v.Continue = safeContinue(v.Continue)
	p.render(w, status, "login", v)
}

func (p *IdP) errorPage(w http.ResponseWriter, status int, title, msg string) {
	p.render(w, status, "error", errorView{Title: title, Message: msg})
}

func (p *IdP) render(w http.ResponseWriter, status int, name string, v any) {
	var buf bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&buf, name, v); err != nil {
		p.log.Error("idp: render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256([]byte(fragmentScript))
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-"+
		base64.StdEncoding.EncodeToString(sum[:])+"'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
