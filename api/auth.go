package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flatfiler/flatfiler/intake/partner"
)

// The spec's JWT rules (section "JWT"): HS256 signed with the partner's API
// key; iss the partner, sub the user, aud the partner's PFM domain; iat in
// the past and at most a day old; exp at most a day after iat.
const (
	maxTokenLifetime = 24 * time.Hour
	clockLeeway      = 60 * time.Second
)

// caller is who a reporting request acts for.
type caller struct {
	partner *partner.Partner
	// user is the one user a JWT reaches; empty for the API key, which
	// reaches all the partner's users and the admin Users section.
	user string
}

func (c caller) byToken() bool { return c.user != "" }

// authError is a refusal with the reason a partner's engineer can act on.
type authError struct{ reason string }

func (e *authError) Error() string { return e.reason }

// authenticate accepts HTTP Basic with the API key as user name (or the
// api_key query parameter, as the upload notification takes it) and
// Bearer JWTs.
func (s *Server) authenticate(r *http.Request) (caller, error) {
	if raw, ok := bearerToken(r); ok {
		return s.verifyToken(raw)
	}
	key := r.URL.Query().Get("api_key")
	if user, _, ok := r.BasicAuth(); ok && key == "" {
		key = user
	}
	if key == "" {
		return caller{}, &authError{"credentials required: HTTP Basic with the API key as user name, or Authorization: Bearer <JWT>"}
	}
	p, ok := s.Partners.ByAPIKey(key)
	if !ok {
		return caller{}, &authError{"invalid API key"}
	}
	return caller{partner: p}, nil
}

// verifyToken checks a JWT with golang-jwt: signature and algorithm first,
// then the spec's claims.
func (s *Server) verifyToken(raw string) (caller, error) {
	now := s.now()
	var claims jwt.RegisteredClaims
	var p *partner.Partner
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithLeeway(clockLeeway),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	_, err := parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		if claims.Issuer == "" {
			return nil, errors.New("iss (the partner id) is missing")
		}
		var ok bool
		if p, ok = s.Partners.Get(claims.Issuer); !ok {
			return nil, fmt.Errorf("iss %q is not a partner", claims.Issuer)
		}
		if p.APIKey == "" {
			return nil, fmt.Errorf("partner %s has no stored API key to verify tokens with; re-import its key", p.ID)
		}
		return []byte(p.APIKey), nil
	})
	if err != nil {
		return caller{}, &authError{"invalid JWT: " + tokenReason(err)}
	}
	if err := numericTimes(raw); err != nil {
		return caller{}, &authError{"invalid JWT: " + err.Error()}
	}
	switch {
	case claims.Subject == "":
		return caller{}, &authError{"invalid JWT: sub (the partner customer id) is missing"}
	case p.Domain == "":
		return caller{}, &authError{fmt.Sprintf("invalid JWT: partner %s has no domain configured, so no aud can match", p.ID)}
	case len(claims.Audience) != 1 || claims.Audience[0] != p.Domain:
		return caller{}, &authError{fmt.Sprintf("invalid JWT: aud %q is not the partner's domain", strings.Join(claims.Audience, ","))}
	case claims.IssuedAt == nil:
		return caller{}, &authError{"invalid JWT: iat is missing"}
	case now.Sub(claims.IssuedAt.Time) > maxTokenLifetime+clockLeeway:
		return caller{}, &authError{"invalid JWT: iat is more than 24 hours ago"}
	case claims.ExpiresAt.Sub(claims.IssuedAt.Time) > maxTokenLifetime:
		return caller{}, &authError{"invalid JWT: exp is more than 24 hours after iat"}
	}
	return caller{partner: p, user: claims.Subject}, nil
}

// numericTimes holds the spec to "iat and exp are numbers, not strings":
// golang-jwt reads a numeric string as a date too.
func numericTimes(raw string) error {
	parts := strings.Split(raw, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1]) // the parser checked there are three
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		return err
	}
	for _, name := range []string{"iat", "exp"} {
		if v := fields[name]; len(v) > 0 && v[0] == '"' {
			return fmt.Errorf("%s is the string %s; it must be a number", name, v)
		}
	}
	return nil
}

// tokenReason names what failed in words a partner can act on.
func tokenReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired (exp is past)"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "iat is in the future"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "exp is missing"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid) && strings.Contains(err.Error(), "signing method"):
		return "alg must be HS256: " + err.Error()
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signature does not verify with the partner's API key"
	}
	return err.Error() // malformed, unverifiable (unknown iss): golang-jwt's words say it
}

// reportHandler serves an authenticated caller.
type reportHandler func(w http.ResponseWriter, r *http.Request, c caller)

// access says who may call a route.
type access int

const (
	keyOrToken access = iota // the API key, or a JWT within its user
	keyOnly                  // the spec's system calls: the Users section
)

// authorized authenticates, and for routes with {user_id} checks that a
// JWT reaches that user.
func (s *Server) authorized(who access, h reportHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.authenticate(r)
		if err != nil {
			s.Metrics.AuthFailures.Inc()
			s.Logger.Info("api request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err.Error())
			w.Header().Set("WWW-Authenticate", `Basic realm="flatfiler"`)
			writeError(w, http.StatusUnauthorized, err.Error(), nil)
			return
		}
		if who == keyOnly && c.byToken() {
			writeError(w, http.StatusUnauthorized, "this endpoint is for the partner's API key; a JWT cannot call it", nil)
			return
		}
		if u := r.PathValue("user_id"); u != "" && c.byToken() && u != c.user {
			writeError(w, http.StatusUnauthorized, fmt.Sprintf("this JWT is for user %q; it cannot reach another user", c.user), nil)
			return
		}
		h(w, r, c)
	}
}

// ClaimedPartner is the partner a request's credentials name, unverified:
// the JWT's iss, or the partner whose API key it carries. A cluster routes
// the request by it to the node holding that partner's warehouse, which
// authenticates it in full; nothing else may trust it.
func ClaimedPartner(r *http.Request, partners *partner.Registry) (string, bool) {
	if raw, ok := bearerToken(r); ok {
		var claims jwt.RegisteredClaims
		if _, _, err := jwt.NewParser().ParseUnverified(raw, &claims); err != nil || claims.Issuer == "" {
			return "", false
		}
		return claims.Issuer, true
	}
	key := r.URL.Query().Get("api_key")
	if user, _, ok := r.BasicAuth(); ok && key == "" {
		key = user
	}
	if key == "" {
		key = formKey(r)
	}
	if p, ok := partners.ByAPIKey(key); ok && key != "" {
		return p.ID, true
	}
	return "", false
}

// formKey reads api_key from a form body (a notification may send its
// parameters so) and puts the body back as it was, for the handler.
func formKey(r *http.Request) string {
	if r.Body == nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return ""
	}
	head, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
	if err != nil {
		return ""
	}
	form, err := url.ParseQuery(string(head))
	if err != nil {
		return ""
	}
	return form.Get("api_key")
}
