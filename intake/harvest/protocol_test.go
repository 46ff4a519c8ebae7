package harvest

import (
	"errors"
	"strings"
	"testing"
)

func TestRequestDocuments(t *testing.T) {
	key, _ := ParseKey(specKey)
	for name, c := range map[string]struct {
		inner []byte
		want  string
	}{
		"users":        {UserList("1234"), "<UserList><Users><User><PartnerCustomerId>1234</PartnerCustomerId></User></Users></UserList>"},
		"accounts":     {AccountList("2358475"), specPayload},
		"transactions": {TransactionList("12345", "9876"), "<TransactionList><AccountId>12345</AccountId><LastTransactionId>9876</LastTransactionId></TransactionList>"},
		"first":        {TransactionList("12345", ""), "<TransactionList><AccountId>12345</AccountId></TransactionList>"},
		"escaped":      {AccountList(`a<b&"c`), "<AccountList><Accounts><Account><PartnerCustomerId>a&lt;b&amp;&#34;c</PartnerCustomerId></Account></Accounts></AccountList>"},
	} {
		if string(c.inner) != c.want {
			t.Errorf("%s: %s, want %s", name, c.inner, c.want)
		}
		doc := Request{ID: 7, SSOPartnerID: "abc123", Inner: c.inner}.Document(key)
		env, err := ReadEnvelope(strings.NewReader(string(doc)), 1<<20)
		if err != nil || env.Name != "PartnerRequest" || env.ID != 7 || env.SSOPartnerID != "abc123" || string(env.Inner) != c.want {
			t.Fatalf("%s: %+v, %v", name, env, err)
		}
		if err := Verify(env.Inner, key, env.Signature); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The spec's example request, signed as the spec's steps say.
	doc := `<PartnerRequest signature="` + derivedSignature + `"
     id="1"
     sso_partner_id="abc123">` + specBody + `</PartnerRequest>`
	env, err := ReadEnvelope(strings.NewReader(doc), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(env.Inner, key, env.Signature); err != nil || env.ID != 1 {
		t.Errorf("the spec's example request, with the derived signature: %v (id %d)", err, env.ID)
	}
}

func TestCheckResponse(t *testing.T) {
	key, _ := ParseKey(specKey)
	inner := `
  <Users>
    <User>
      <PartnerCustomerId>123</PartnerCustomerId>
    </User>
  </Users>
`
	good := string(Response(2, []byte(inner), key))
	cases := []struct {
		name, doc string
		want      error
	}{
		{"good", good, nil},
		{"indented differently", strings.ReplaceAll(good, "\n    ", "\n\t\t"), nil},
		{"another request's", strings.Replace(good, `request_id="2"`, `request_id="3"`, 1), ErrRequestID},
		{"a changed body", strings.Replace(good, "123", "124", 1), ErrSignature},
		{"unsigned", strings.Replace(good, `signature="`, `x="`, 1), ErrSignature},
		{"a request", strings.ReplaceAll(strings.Replace(good, `request_id`, `id`, 1), "PartnerResponse", "PartnerRequest"), ErrMalformed},
		{"unclosed", strings.TrimSuffix(good, "</PartnerResponse>"), ErrMalformed},
		{"mismatched", strings.Replace(good, "</Users>", "</Accounts>", 1), ErrMalformed},
		{"two roots", good + good, ErrMalformed},
		{"text after", good + "x", ErrMalformed},
		{"a DOCTYPE", `<!DOCTYPE x [<!ENTITY a "aaaa">]>` + good, ErrMalformed},
		{"an id that is no number", strings.Replace(good, `request_id="2"`, `request_id="two"`, 1), ErrMalformed},
		{"too deep", `<PartnerResponse request_id="2">` + strings.Repeat("<a>", 40) + strings.Repeat("</a>", 40) + `</PartnerResponse>`, ErrMalformed},
		{"empty", "", ErrMalformed},
	}
	for _, c := range cases {
		env, err := ReadEnvelope(strings.NewReader(c.doc), 1<<20)
		if err == nil {
			err = env.CheckResponse(2, key)
		}
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := ReadEnvelope(strings.NewReader(good), int64(len(good)-1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("over the limit: %v", err)
	}
}
