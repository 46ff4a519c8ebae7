package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flatfiler/flatfiler/intake/inbox"
	"github.com/flatfiler/flatfiler/intake/partner"
)

// The notification's parameters, as any query string could give them: a
// notification the parser accepts names only plain, distinct file names,
// each with an MD5; anything else is refused naming the file and field.
func FuzzNotificationParams(f *testing.F) {
	for _, seed := range []string{
		"api_key=abc123&filenames=data.xml,data2.xml&hash=hash1,hash1&types=account,user", // the spec's example
		"filenames=users.xml&hashes=d41d8cd98f00b204e9800998ecf8427e",
		"filenames=a.xml,b.xml&hashes=d41d8cd98f00b204e9800998ecf8427e,D41D8CD98F00B204E9800998ECF8427E&types=combined,transactions",
		"filenames=../etc/passwd&hashes=d41d8cd98f00b204e9800998ecf8427e",
		"filename=a.xml&filename=a.xml&hash=x,y",
		"filenames=%2e%2e&hashes=",
	} {
		f.Add(seed)
	}
	fields := map[string]bool{"filenames": true, "hashes": true, "types": true}
	md5 := regexp.MustCompile(`^[0-9A-Fa-f]{32}$`)
	f.Fuzz(func(t *testing.T, raw string) {
		form, _ := url.ParseQuery(raw)
		files, problems, invalidList := parseNotification(form)
		if invalidList != "" {
			return
		}
		for _, p := range problems {
			if !fields[p.Field] || !strings.HasPrefix(p.Message, p.Filename) {
				t.Fatalf("problem %+v does not name its file and a field", p)
			}
		}
		if len(problems) > 0 {
			return
		}
		if len(files) == 0 {
			t.Fatal("accepted a notification of no files")
		}
		seen := map[string]bool{}
		for _, file := range files {
			if !inbox.ValidName(file.Name) || strings.ContainsAny(file.Name, `/\`) || strings.Contains(file.Name, "..") || seen[file.Name] {
				t.Fatalf("accepted file name %q", file.Name)
			}
			if !md5.MatchString(file.MD5) {
				t.Fatalf("accepted hash %q", file.MD5)
			}
			seen[file.Name] = true
		}
	})
}

// The reporting API's query parameters: what a parser accepts is in range
// (a page from 1, at most maxPerPage a page, a threshold from 0 to 100,
// dates in order), and whatever it refuses names the parameter.
func FuzzReportQueries(f *testing.F) {
	for _, seed := range []string{
		"page=2&per_page=10", "per_page=101", "page=0", "page=9223372036854775807&per_page=100",
		"q=dunkin&tags[]=Diningout&tags=Fees,Income&untagged=1&begin_on=2016-01-01&end_on=2016-12-31&account_ids=1,2",
		"begin_on=2016-13-01", "end_on=2016-01-01&begin_on=2016-02-01", "threshold=80", "threshold=-1", "threshold=1e3",
	} {
		f.Add(seed)
	}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	names := regexp.MustCompile(`^(page|per_page|begin_on|end_on|untagged|threshold): `)
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		checkProblems := func(problems []string) {
			for _, p := range problems {
				if !names.MatchString(p) {
					t.Fatalf("problem %q does not start with its parameter", p)
				}
			}
		}
		page, problems := pageParams(q)
		checkProblems(problems)
		if problems == nil {
			if page.Number < 1 || page.Size < 1 || page.Size > maxPerPage {
				t.Fatalf("accepted page %+v", page)
			}
			if page.Number > 1 && (page.Number-1)*page.Size < 0 {
				t.Fatalf("page %+v overflows its offset", page)
			}
		}
		filter, refs, problems := searchParams(q)
		checkProblems(problems)
		if problems == nil && !filter.From.IsZero() && !filter.To.IsZero() && filter.To.Before(filter.From) {
			t.Fatalf("accepted dates out of order: %v", filter)
		}
		for _, list := range [][]string{filter.Tags, refs} {
			for _, v := range list {
				if v == "" || strings.TrimSpace(v) != v || strings.Contains(v, ",") {
					t.Fatalf("list item %q", v)
				}
			}
		}
		for _, period := range []string{"", "last_month", "this_month", "last_thirty_days"} {
			from, to, threshold, problems := expenseParams(q, period, now)
			checkProblems(problems)
			if problems == nil && (threshold < 0 || threshold > 100 || to.Before(from)) {
				t.Fatalf("accepted %s: %v to %v, threshold %d", period, from, to, threshold)
			}
		}
	})
}

// Any token at all: one that verifies is HS256, signed with the partner's
// API key over exactly its header and payload (checked here with crypto/hmac,
// not golang-jwt), for a user of that partner.
func FuzzVerifyToken(f *testing.F) {
	const key, domain = "fuzz-api-key-0123456789abcdef", "pfm.fuzz.example"
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	reg, err := partner.Open(filepath.Join(f.TempDir(), "partners"))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := reg.Add("acme", partner.NewOptions{Domain: domain, APIKey: key}); err != nil {
		f.Fatal(err)
	}
	s := &Server{Partners: reg, Now: func() time.Time { return now }}
	sign := func(method jwt.SigningMethod, claims jwt.MapClaims, secret any) string {
		tok, err := jwt.NewWithClaims(method, claims).SignedString(secret)
		if err != nil {
			f.Fatal(err)
		}
		return tok
	}
	good := jwt.MapClaims{"iss": "acme", "sub": "u1", "aud": domain, "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()}
	f.Add(sign(jwt.SigningMethodHS256, good, []byte(key)))
	f.Add(sign(jwt.SigningMethodHS512, good, []byte(key)))
	f.Add(sign(jwt.SigningMethodNone, good, jwt.UnsafeAllowNoneSignatureType))
	f.Add(sign(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "acme", "sub": "u1", "aud": domain, "iat": "1", "exp": "2"}, []byte(key)))
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := s.verifyToken(raw)
		if err != nil {
			return
		}
		parts := strings.Split(raw, ".")
		if len(parts) != 3 {
			t.Fatalf("verified a token of %d parts", len(parts))
		}
		header, _ := base64.RawURLEncoding.DecodeString(parts[0])
		var h struct {
			Alg string `json:"alg"`
		}
		if json.Unmarshal(header, &h) != nil || h.Alg != "HS256" {
			t.Fatalf("verified a token whose header is %q", header)
		}
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(parts[0] + "." + parts[1]))
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("verified a token not signed with the partner's key: %q", raw)
		}
		if c.partner == nil || c.partner.ID != "acme" || c.user == "" {
			t.Fatalf("verified token acts for %+v", c)
		}
	})
}
