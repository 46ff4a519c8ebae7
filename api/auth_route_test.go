package api

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flatfiler/flatfiler/intake/partner"
)

// A cluster routes a request by the partner its credentials name, in every
// form the API takes them; the body a handler reads is left whole.
func TestClaimedPartner(t *testing.T) {
	reg, err := partner.Open(filepath.Join(t.TempDir(), "partners"))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := reg.Add("acme", partner.NewOptions{Domain: "acme.example"})
	if err != nil {
		t.Fatal(err)
	}
	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "acme", Subject: "u1",
		IssuedAt: jwt.NewNumericDate(time.Now())}).SignedString([]byte("not checked here"))
	form := url.Values{"api_key": {creds.APIKey}, "filenames": {"a.xml"}}.Encode()
	for _, tt := range []struct {
		name string
		req  func() *http.Request
		want string
	}{
		{"query", func() *http.Request {
			return httptest.NewRequest("GET", "/api/v2/uploads?api_key="+creds.APIKey, nil)
		}, "acme"},
		{"basic", func() *http.Request {
			r := httptest.NewRequest("GET", "/api/v2/uploads", nil)
			r.SetBasicAuth(creds.APIKey, "")
			return r
		}, "acme"},
		{"bearer", func() *http.Request {
			r := httptest.NewRequest("GET", "/api/v2/users/u1/transactions", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			return r
		}, "acme"},
		{"form body", func() *http.Request {
			r := httptest.NewRequest("POST", "/api/v2/uploads/received", strings.NewReader(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, "acme"},
		{"unknown key", func() *http.Request {
			return httptest.NewRequest("GET", "/api/v2/uploads?api_key=nope", nil)
		}, ""},
		{"none", func() *http.Request { return httptest.NewRequest("GET", "/metrics", nil) }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req()
			got, ok := ClaimedPartner(r, reg)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("ClaimedPartner = %q, %v; want %q", got, ok, tt.want)
			}
			if tt.name == "form body" {
				if err := r.ParseForm(); err != nil || r.PostForm.Get("filenames") != "a.xml" {
					t.Errorf("the body after routing: %v %v", r.PostForm, err)
				}
			}
		})
	}
}
