package api

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/stages"
	"github.com/flatfiler/flatfiler/stages/enrich"
	"github.com/flatfiler/flatfiler/warehouse"
)

// The spec's user writes (Users and Current User sections). They reach the
// warehouse as a file's records do, through the pipeline: a create or
// update is a push batch of one user, a delete a flat file of one user
// Delete, so validation, the cascade of a delete and the file-atomic commit
// are the files' own, and each write has its row in ingests ("api:...").
// What only the API carries (login, birth year, sex, custom tags) is stored
// in the same transaction (warehouse.Profile).

func (s *Server) userWriteRoutes(route func(pattern, name string, h http.HandlerFunc)) {
	route("POST "+v2+"/users", "user_create", s.authorized(keyOnly, s.createUser))
	route("PUT "+v2+"/users/current", "user_current_update", s.authorized(keyOrToken, s.currentUserWrite(s.updateUser)))
	route("DELETE "+v2+"/users/current", "user_current_delete", s.authorized(keyOrToken, s.currentUserWrite(s.deleteUser)))
	route("PUT "+v2+"/users/{user_id}", "user_update", s.authorized(keyOnly, s.pathUserWrite(s.updateUser)))
	route("DELETE "+v2+"/users/{user_id}", "user_delete", s.authorized(keyOnly, s.pathUserWrite(s.deleteUser)))
}

// flexString is a JSON string or number, as the spec's examples send ids
// and postal codes both ways ("id": "42" and "id": 42).
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*f = flexString(b)
	default:
		return &json.UnmarshalTypeError{Value: jsonValueKind(b), Type: reflect.TypeFor[string]()}
	}
	return nil
}

func jsonValueKind(b []byte) string {
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "value"
}

// userBody is the spec's {"user": {...}}; a field left out is unchanged by
// a PUT.
type userBody struct {
	User *struct {
		ID         *flexString  `json:"id"`
		Login      *string      `json:"login"`
		FirstName  *string      `json:"first_name"`
		LastName   *string      `json:"last_name"`
		Email      *string      `json:"email"`
		PostalCode *flexString  `json:"postal_code"`
		BirthYear  *json.Number `json:"birth_year"`
		Sex        *string      `json:"sex"`
		CustomTags *[]string    `json:"custom_tags"`
	} `json:"user"`
}

// apply merges the body into u (the stored user for a PUT, empty for a
// POST) and lists what is wrong, each entry naming the parameter.
func (b *userBody) apply(u *warehouse.User) []string {
	var problems []string
	in := b.User
	if in == nil {
		return []string{`user: required: {"user": {"id": ..., "email": ..., "first_name": ..., "last_name": ...}}`}
	}
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = strings.TrimSpace(*v)
		}
	}
	set(&u.FirstName, in.FirstName)
	set(&u.LastName, in.LastName)
	set(&u.Email, in.Email)
	if in.PostalCode != nil {
		u.ZipCode = strings.TrimSpace(string(*in.PostalCode))
	}
	p := &u.Profile
	if in.Login != nil {
		login := strings.TrimSpace(*in.Login)
		switch {
		case login == "":
			p.Login = nil
		case len([]rune(login)) > 255:
			problems = append(problems, "user.login: longer than 255 characters")
		default:
			p.Login = &login
		}
	}
	if in.BirthYear != nil {
		y, err := strconv.Atoi(string(*in.BirthYear))
		if err != nil || y < 1850 || y > 2200 {
			problems = append(problems, fmt.Sprintf("user.birth_year: %s is not a year", *in.BirthYear))
		} else {
			p.BirthYear = &y
		}
	}
	if in.Sex != nil {
		switch sex := strings.TrimSpace(*in.Sex); {
		case strings.EqualFold(sex, "male"), strings.EqualFold(sex, "female"):
			canonical := strings.ToUpper(sex[:1]) + strings.ToLower(sex[1:])
			p.Sex = &canonical
		case sex == "":
			p.Sex = nil
		default:
			problems = append(problems, fmt.Sprintf("user.sex: %q is not Male or Female", sex))
		}
	}
	if in.CustomTags != nil {
		p.CustomTags = []string{}
		for i, t := range *in.CustomTags {
			if err := enrich.CheckTagName(t); err != nil {
				problems = append(problems, fmt.Sprintf("user.custom_tags[%d]: %v", i, err))
			}
			p.CustomTags = append(p.CustomTags, t)
		}
	}
	return problems
}

// userParams names the push batch's user fields as the API's parameters.
var userParams = map[string]string{
	"partner_customer_id": "id", "first_name": "first_name", "last_name": "last_name", "email": "email", "zip_code": "postal_code",
}

// checkUser holds u to the rules a push batch's user is held to (stages,
// once for every source), naming the API's parameters.
func checkUser(u warehouse.User) []string {
	v := stages.Validator{Type: parse.Combined, Batch: true}.Validate([]parse.Record{{User: &parse.User{
		PartnerCustomerID: u.ID, FirstName: u.FirstName, LastName: u.LastName, Email: u.Email, ZipCode: u.ZipCode,
	}}})
	var problems []string
	for _, r := range v.Rejections {
		param, ok := userParams[r.Field]
		if !ok {
			param = r.Field
		}
		problems = append(problems, "user."+param+": "+strings.Replace(r.Message, r.Field, param, 1))
	}
	return problems
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, c caller) {
	var body userBody
	if !readBody(w, r, 1<<16, "Error in user", &body) {
		return
	}
	var u warehouse.User
	problems := body.apply(&u)
	if body.User != nil && body.User.ID != nil {
		u.ID = strings.TrimSpace(string(*body.User.ID))
	}
	if problems = append(problems, checkUser(u)...); problems != nil {
		invalid(w, "Error in user", problems)
		return
	}
	exists, err := s.Store.UserExists(r.Context(), c.partner.ID, u.ID)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if exists {
		writeError(w, http.StatusConflict, fmt.Sprintf("user %q exists", u.ID),
			[]string{fmt.Sprintf("user.id: %q is taken; PUT /api/v2/users/%s changes it", u.ID, u.ID)})
		return
	}
	if !s.storeUser(w, r, c.partner.ID, "POST", u) {
		return
	}
	stored, err := s.Store.User(r.Context(), c.partner.ID, u.ID)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	v, err := s.userView(r, c.partner.ID, stored)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string][]userJSON{"users": {v}})
}

// userWriteHandler acts on a user the partner has.
type userWriteHandler func(w http.ResponseWriter, r *http.Request, c caller, user warehouse.User)

// pathUserWrite finds the {user_id} user; currentUserWrite the JWT's.
func (s *Server) pathUserWrite(h userWriteHandler) reportHandler {
	return func(w http.ResponseWriter, r *http.Request, c caller) {
		s.withStoredUser(w, r, c, r.PathValue("user_id"), h)
	}
}

func (s *Server) currentUserWrite(h userWriteHandler) reportHandler {
	return func(w http.ResponseWriter, r *http.Request, c caller) {
		if !c.byToken() {
			writeError(w, http.StatusNotFound, "no current user: the API key acts for every user",
				[]string{"users/current: needs a user's JWT; with the API key use users/:user_id:"})
			return
		}
		s.withStoredUser(w, r, c, c.user, h)
	}
}

// withStoredUser reads the user without the reads' admission (forUser): a
// write waits for a file's commit, and must not hold readers out meanwhile.
func (s *Server) withStoredUser(w http.ResponseWriter, r *http.Request, c caller, id string, h userWriteHandler) {
	u, err := s.Store.User(r.Context(), c.partner.ID, id)
	if errors.Is(err, warehouse.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no user %q", id), []string{fmt.Sprintf("user_id: the partner has no user %q", id)})
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	h(w, r, c, u)
}

func (s *Server) updateUser(w http.ResponseWriter, r *http.Request, c caller, u warehouse.User) {
	var body userBody
	if !readBody(w, r, 1<<16, "Error in user", &body) {
		return
	}
	problems := body.apply(&u)
	if body.User != nil && body.User.ID != nil && strings.TrimSpace(string(*body.User.ID)) != u.ID {
		problems = append(problems, fmt.Sprintf("user.id: %q is not this user's id %q; a user's id does not change", *body.User.ID, u.ID))
	}
	if problems = append(problems, checkUser(u)...); problems != nil {
		invalid(w, "Error in user", problems)
		return
	}
	if s.storeUser(w, r, c.partner.ID, "PUT", u) {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, c caller, u warehouse.User) {
	var doc bytes.Buffer
	doc.WriteString("<Users><User><Details><Action>Delete</Action><PartnerCustomerId>")
	escapeText(&doc, u.ID)
	doc.WriteString("</PartnerCustomerId></Details></User></Users>")
	if s.apply(w, r, "Error in user", c.partner.ID, "api:DELETE user "+u.ID, &doc, pipeline.Options{}) {
		w.WriteHeader(http.StatusNoContent)
	}
}

// storeUser applies a create or update: the user as a push batch of one,
// its profile with it.
func (s *Server) storeUser(w http.ResponseWriter, r *http.Request, partnerID, method string, u warehouse.User) bool {
	batch, err := json.Marshal(map[string]any{"users": []map[string]string{{
		"partner_customer_id": u.ID, "first_name": u.FirstName, "last_name": u.LastName, "email": u.Email, "zip_code": u.ZipCode,
	}}})
	if err != nil {
		s.internalError(w, r, err)
		return false
	}
	profile := u.Profile
	profile.User = u.ID
	return s.apply(w, r, "Error in user", partnerID, "api:"+method+" user "+u.ID, bytes.NewReader(batch),
		pipeline.Options{Format: pipeline.PushBatch, Profiles: []warehouse.Profile{profile}})
}

// apply runs one API write through the pipeline; false: it answered.
// message heads a 422 ("Error in user", "Error in account").
func (s *Server) apply(w http.ResponseWriter, r *http.Request, message, partnerID, name string, body io.Reader, opts pipeline.Options) bool {
	if s.Pipeline == nil {
		writeError(w, http.StatusServiceUnavailable, "this server takes no writes", []string{"server: started without a pipeline"})
		return false
	}
	opts.Partner, opts.Logger = partnerID, s.Logger
	rep, err := s.Pipeline.Ingest(r.Context(), name, body, opts)
	if err != nil {
		s.internalError(w, r, err)
		return false
	}
	if rep.Status != pipeline.StatusSuccess {
		// The write's own checks hold the same rules: this is one they lack.
		var problems []string
		for _, e := range rep.Errors {
			problems = append(problems, e.Field+": "+e.Message)
		}
		invalid(w, message, problems)
		return false
	}
	return true
}

// escapeText writes s as XML character data.
func escapeText(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s)) // a bytes.Buffer does not fail
}
