package kit

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/soukhq/souk/internal/bearer"
)

// APIHandler serves the vendor application's read API over the directory:
//
//	GET /api/v1/tenants/{tenantId}          → {"tenant":…, "apps":[…]}
//	GET /api/v1/tenants/{tenantId}/users    → {"users":[…], "next":"…"}  (?appId= &state= &after= &limit=)
//	GET /api/v1/tenants/{tenantId}/orgs     → {"orgs":[…]} flat, or a forest with ?tree=1
//
// ?test=1 reads the debugging (testFlag 1) directory. Every request needs
// "Authorization: Bearer <Config.APIToken>"; with no token configured the API
// answers 404. Errors are JSON {"error": "..."}.
func (s *Service) APIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/tenants/{tenantId}", s.apiTenant)
	mux.HandleFunc("GET /api/v1/tenants/{tenantId}/users", s.apiUsers)
	mux.HandleFunc("GET /api/v1/tenants/{tenantId}/orgs", s.apiOrgs)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.APIToken == "" {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "the directory API is disabled (no API token configured)"})
			return
		}
		if !bearer.Match(r.Header.Get("Authorization"), ParseKeys(s.cfg.APIToken)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="souk"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func testParam(r *http.Request) bool {
	v := r.URL.Query().Get("test")
	return v == "1" || v == "true"
}

func (s *Service) apiError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	s.log.Error("kit api", "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
}

func (s *Service) apiTenant(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("tenantId")
	t, err := s.Tenant(ctx, testParam(r), id)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	apps, err := s.Apps(ctx, t.TestFlag, id)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	if apps == nil {
		apps = []App{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenant": t, "apps": apps})
}

func (s *Service) apiUsers(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	f := UserFilter{AppID: q.Get("appId"), State: q.Get("state"), After: q.Get("after")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a positive integer"})
			return
		}
		f.Limit = n
	}
	switch f.State {
	case "", StateAuthorized, StateDeleted, StateCancelled:
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "state must be authorized, deleted or cancelled"})
		return
	}
	id := r.PathValue("tenantId")
	users, err := s.Users(ctx, testParam(r), id, f)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := map[string]any{"users": users}
	if users == nil {
		out["users"] = []User{}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	if len(users) == min(limit, 10000) {
		out["next"] = users[len(users)-1].UserName
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) apiOrgs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("tenantId")
	flat, err := s.Orgs(ctx, testParam(r), id)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	if t := r.URL.Query().Get("tree"); t == "1" || t == "true" {
		tree := BuildTree(flat)
		if tree == nil {
			tree = []*Org{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"orgs": tree})
		return
	}
	if flat == nil {
		flat = []Org{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"orgs": flat})
}
