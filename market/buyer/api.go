package buyer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

const maxRequestBody = 4 << 20

// Handler returns the buyer center's JSON API. Paths are relative: mount it
// with http.StripPrefix, e.g. under /api/v1/buyer. Authentication of the
// buyer is the mounting server's job.
//
//	POST   /enterprises                                  {tenantCode?, name, customerId?}
//	GET    /enterprises[?customerId=]
//	GET    /enterprises/{tid}
//	PATCH  /enterprises/{tid}                            {name}
//	GET    /enterprises/{tid}/departments[?tree=1]          flat list, or nested
//	POST   /enterprises/{tid}/departments                {orgCode?, orgName, parentCode?}
//	PATCH  /enterprises/{tid}/departments/{code}         {orgName?, parentCode?}
//	DELETE /enterprises/{tid}/departments/{code}
//	GET    /enterprises/{tid}/members
//	POST   /enterprises/{tid}/members                    {members: [MemberInput…]} (batch)
//	GET    /enterprises/{tid}/members/{id}
//	PATCH  /enterprises/{tid}/members/{id}               MemberPatch
//	POST   /enterprises/{tid}/members/enable|disable|delete  {ids: […]} (batch)
//	GET    /enterprises/{tid}/apps
//	POST   /enterprises/{tid}/apps                       {instanceId}  bind
//	GET    /enterprises/{tid}/apps/{bid}
//	DELETE /enterprises/{tid}/apps/{bid}                 unbind
//	POST   /enterprises/{tid}/apps/{bid}/enable|stop
//	GET    /enterprises/{tid}/apps/{bid}/grants
//	POST   /enterprises/{tid}/apps/{bid}/grants          {members, departments}  authorize
//	POST   /enterprises/{tid}/apps/{bid}/grants/cancel   {members, departments}  cancel authorization
//	GET    /enterprises/{tid}/apps/{bid}/users           authorized users as sent to the merchant
//	GET    /enterprises/{tid}/messages[?state=&interface=&bindingId=&limit=]
//	GET    /enterprises/{tid}/messages/{id}
//	POST   /enterprises/{tid}/messages/{id}/retry
//
// Changes answer with the resulting object and "messages": the kit calls
// they caused, with the outcome of their (single) attempt.
func (c *Center) Handler() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, f func(w http.ResponseWriter, r *http.Request) (int, any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			status, v, err := f(w, r)
			if err != nil {
				c.writeError(w, r, err)
				return
			}
			writeJSON(w, status, v)
		})
	}
	tid := func(r *http.Request) string { return r.PathValue("tid") }

	h("POST /enterprises", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var in EnterpriseInput
		if err := decode(w, r, &in); err != nil {
			return 0, nil, err
		}
		e, err := c.CreateEnterprise(r.Context(), in)
		return http.StatusCreated, e, err
	})
	h("GET /enterprises", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		es, err := c.Enterprises(r.Context(), r.URL.Query().Get("customerId"))
		return http.StatusOK, map[string]any{"enterprises": es}, err
	})
	h("GET /enterprises/{tid}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		e, err := c.Enterprise(r.Context(), tid(r))
		return http.StatusOK, e, err
	})
	h("PATCH /enterprises/{tid}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var in struct {
			Name string `json:"name"`
		}
		if err := decode(w, r, &in); err != nil {
			return 0, nil, err
		}
		e, msgs, err := c.RenameEnterprise(r.Context(), tid(r), in.Name)
		return http.StatusOK, map[string]any{"enterprise": e, "messages": msgs}, err
	})

	h("GET /enterprises/{tid}/departments", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		ds, err := c.Departments(r.Context(), tid(r))
		if err == nil && r.URL.Query().Get("tree") != "" {
			return http.StatusOK, map[string]any{"tree": DepartmentTree(ds)}, nil
		}
		return http.StatusOK, map[string]any{"departments": ds}, err
	})
	h("POST /enterprises/{tid}/departments", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var in DepartmentInput
		if err := decode(w, r, &in); err != nil {
			return 0, nil, err
		}
		d, msgs, err := c.CreateDepartment(r.Context(), tid(r), in)
		return http.StatusCreated, map[string]any{"department": d, "messages": msgs}, err
	})
	h("PATCH /enterprises/{tid}/departments/{code}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var in DepartmentPatch
		if err := decode(w, r, &in); err != nil {
			return 0, nil, err
		}
		d, msgs, err := c.UpdateDepartment(r.Context(), tid(r), r.PathValue("code"), in)
		return http.StatusOK, map[string]any{"department": d, "messages": msgs}, err
	})
	h("DELETE /enterprises/{tid}/departments/{code}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		msgs, err := c.DeleteDepartment(r.Context(), tid(r), r.PathValue("code"))
		return http.StatusOK, map[string]any{"messages": msgs}, err
	})

	h("GET /enterprises/{tid}/members", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		ms, err := c.Members(r.Context(), tid(r))
		return http.StatusOK, map[string]any{"members": ms}, err
	})
	h("POST /enterprises/{tid}/members", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var in struct {
			Members []MemberInput `json:"members"`
		}
		if err := decode(w, r, &in); err != nil {
			return 0, nil, err
		}
		ms, msgs, err := c.CreateMembers(r.Context(), tid(r), in.Members)
		return http.StatusCreated, map[string]any{"members": ms, "messages": msgs}, err
	})
	h("GET /enterprises/{tid}/members/{id}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		m, err := c.Member(r.Context(), tid(r), r.PathValue("id"))
		return http.StatusOK, m, err
	})
	h("PATCH /enterprises/{tid}/members/{id}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var in MemberPatch
		if err := decode(w, r, &in); err != nil {
			return 0, nil, err
		}
		m, msgs, err := c.UpdateMember(r.Context(), tid(r), r.PathValue("id"), in)
		return http.StatusOK, map[string]any{"member": m, "messages": msgs}, err
	})
	for _, action := range []string{"enable", "disable", "delete"} {
		h("POST /enterprises/{tid}/members/"+action, func(w http.ResponseWriter, r *http.Request) (int, any, error) {
			var in struct {
				IDs []string `json:"ids"`
			}
			if err := decode(w, r, &in); err != nil {
				return 0, nil, err
			}
			var msgs []Message
			var err error
			switch action {
			case "enable", "disable":
				msgs, err = c.SetMembersEnabled(r.Context(), tid(r), in.IDs, action == "enable")
			default:
				msgs, err = c.DeleteMembers(r.Context(), tid(r), in.IDs)
			}
			return http.StatusOK, map[string]any{"messages": msgs}, err
		})
	}

	h("GET /enterprises/{tid}/apps", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		bs, err := c.Bindings(r.Context(), tid(r))
		return http.StatusOK, map[string]any{"apps": bs}, err
	})
	h("POST /enterprises/{tid}/apps", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var in struct {
			InstanceID string `json:"instanceId"`
		}
		if err := decode(w, r, &in); err != nil {
			return 0, nil, err
		}
		b, msgs, err := c.BindApp(r.Context(), tid(r), in.InstanceID)
		return http.StatusCreated, map[string]any{"app": b, "messages": msgs}, err
	})
	h("GET /enterprises/{tid}/apps/{bid}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		b, err := c.Binding(r.Context(), tid(r), r.PathValue("bid"))
		return http.StatusOK, b, err
	})
	h("DELETE /enterprises/{tid}/apps/{bid}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		msgs, err := c.UnbindApp(r.Context(), tid(r), r.PathValue("bid"))
		return http.StatusOK, map[string]any{"messages": msgs}, err
	})
	for _, action := range []string{"enable", "stop"} {
		h("POST /enterprises/{tid}/apps/{bid}/"+action, func(w http.ResponseWriter, r *http.Request) (int, any, error) {
			b, err := c.SetAppEnabled(r.Context(), tid(r), r.PathValue("bid"), action == "enable")
			return http.StatusOK, b, err
		})
	}
	h("GET /enterprises/{tid}/apps/{bid}/grants", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		s, err := c.Grants(r.Context(), tid(r), r.PathValue("bid"))
		return http.StatusOK, s, err
	})
	h("POST /enterprises/{tid}/apps/{bid}/grants", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var in Subjects
		if err := decode(w, r, &in); err != nil {
			return 0, nil, err
		}
		msgs, err := c.Authorize(r.Context(), tid(r), r.PathValue("bid"), in)
		return http.StatusOK, map[string]any{"messages": msgs}, err
	})
	h("POST /enterprises/{tid}/apps/{bid}/grants/cancel", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var in Subjects
		if err := decode(w, r, &in); err != nil {
			return 0, nil, err
		}
		msgs, err := c.Deauthorize(r.Context(), tid(r), r.PathValue("bid"), in)
		return http.StatusOK, map[string]any{"messages": msgs}, err
	})
	h("GET /enterprises/{tid}/apps/{bid}/users", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		us, err := c.AppUsers(r.Context(), tid(r), r.PathValue("bid"))
		return http.StatusOK, map[string]any{"users": us}, err
	})

	h("GET /enterprises/{tid}/messages", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		q := r.URL.Query()
		f := MessageFilter{State: q.Get("state"), Interface: q.Get("interface"), BindingID: q.Get("bindingId")}
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil {
				return 0, nil, invalid("limit", "is not a number")
			}
			f.Limit = n
		}
		if _, err := c.Enterprise(r.Context(), tid(r)); err != nil {
			return 0, nil, err
		}
		ms, err := c.Messages(r.Context(), tid(r), f)
		return http.StatusOK, map[string]any{"messages": ms}, err
	})
	h("GET /enterprises/{tid}/messages/{id}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			return 0, nil, notFound("message %q not found", r.PathValue("id"))
		}
		m, err := c.Message(r.Context(), tid(r), id)
		return http.StatusOK, m, err
	})
	h("POST /enterprises/{tid}/messages/{id}/retry", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			return 0, nil, notFound("message %q not found", r.PathValue("id"))
		}
		m, err := c.Retry(r.Context(), tid(r), id)
		return http.StatusOK, m, err
	})
	return mux
}

// decode reads a JSON request body strictly (unknown fields are errors: a
// typo in an admin request should not silently do nothing).
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return invalid("body", "is larger than %d bytes", maxRequestBody)
		}
		if errors.Is(err, io.EOF) {
			return invalid("body", "is empty")
		}
		return invalid("body", "is not valid JSON: %v", err)
	}
	if dec.More() {
		return invalid("body", "has data after the JSON value")
	}
	return nil
}

func (c *Center) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if errors.As(err, &e) {
		status := http.StatusBadRequest
		switch e.Kind {
		case "not_found":
			status = http.StatusNotFound
		case "conflict":
			status = http.StatusConflict
		}
		writeJSON(w, status, map[string]any{"error": e})
		return
	}
	c.log.ErrorContext(r.Context(), "buyer: api", "method", r.Method, "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, map[string]any{"error": Error{Kind: "internal", Message: "internal error"}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, fmt.Sprintf(`{"error":{"kind":"internal","message":%q}}`, "encoding the answer"), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
