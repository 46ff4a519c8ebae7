package api

import (
	"bytes"
	"encoding/base64"
	"io"
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

// FuzzClaimedPartner: whatever a request carries, routing it leaves its
// body as sent for the handler, and names a partner only by a key the
// registry has or a token's iss.
func FuzzClaimedPartner(f *testing.F) {
	reg, err := partner.Open(filepath.Join(f.TempDir(), "partners"))
	if err != nil {
		f.Fatal(err)
	}
	creds, err := reg.Add("acme", partner.NewOptions{Domain: "acme.example"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("", "api_key="+creds.APIKey, []byte("filenames=a.xml"), true)
	f.Add("Bearer eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJhY21lIn0.x", "", []byte(""), false)
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte(creds.APIKey+":")), "", []byte(`{"users":[]}`), false)
	f.Add("", "", []byte("api_key="+creds.APIKey+"&hashes=%zz"), true)
	f.Fuzz(func(t *testing.T, authorization, query string, body []byte, form bool) {
		r := httptest.NewRequest("POST", "/api/v2/uploads/received", bytes.NewReader(body))
		r.URL.RawQuery = query
		if authorization != "" {
			r.Header["Authorization"] = []string{authorization}
		}
		if form {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		id, ok := ClaimedPartner(r, reg)
		after, err := io.ReadAll(r.Body)
		if err != nil || !bytes.Equal(after, body) {
			t.Fatalf("the body after routing: %q, %v; sent %q", after, err, body)
		}
		if ok && id != "acme" && !strings.HasPrefix(authorization, "Bearer ") {
			t.Fatalf("named partner %q from no key of the registry", id)
		}
		if !ok && id != "" {
			t.Fatalf("named %q without ok", id)
		}
	})
}
