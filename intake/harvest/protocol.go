package harvest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The spec's "Partner Request" and "Partner Response": every request and
// response is one element, <PartnerRequest> or <PartnerResponse>, whose
// signature attribute signs its inner body (Sign).

// UserList is the inner body that asks for users by partner customer id.
func UserList(ids ...string) []byte {
	var b bytes.Buffer
	b.WriteString("<UserList><Users>")
	for _, id := range ids {
		b.WriteString("<User><PartnerCustomerId>")
		escape(&b, id)
		b.WriteString("</PartnerCustomerId></User>")
	}
	b.WriteString("</Users></UserList>")
	return b.Bytes()
}

// AccountList asks for a user's accounts.
func AccountList(customerID string) []byte {
	var b bytes.Buffer
	b.WriteString("<AccountList><Accounts><Account><PartnerCustomerId>")
	escape(&b, customerID)
	b.WriteString("</PartnerCustomerId></Account></Accounts></AccountList>")
	return b.Bytes()
}

// TransactionList asks for an account's transactions: those newer than
// lastTransactionID, or all of them when it is empty.
func TransactionList(accountID, lastTransactionID string) []byte {
	var b bytes.Buffer
	b.WriteString("<TransactionList><AccountId>")
	escape(&b, accountID)
	b.WriteString("</AccountId>")
	if lastTransactionID != "" {
		b.WriteString("<LastTransactionId>")
		escape(&b, lastTransactionID)
		b.WriteString("</LastTransactionId>")
	}
	b.WriteString("</TransactionList>")
	return b.Bytes()
}

func escape(b *bytes.Buffer, s string) { _ = xml.EscapeText(b, []byte(s)) } // a Buffer does not fail

// Request is one <PartnerRequest>.
type Request struct {
	ID           int64  // unique per day
	SSOPartnerID string // the partner's id, for resellers with one endpoint
	Inner        []byte // UserList, AccountList or TransactionList
}

// Document is the request as sent, signed with key.
func (r Request) Document(key []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`<PartnerRequest signature="`)
	b.WriteString(Sign(r.Inner, key))
	b.WriteString(`" id="`)
	b.WriteString(strconv.FormatInt(r.ID, 10))
	b.WriteString(`" sso_partner_id="`)
	escape(&b, r.SSOPartnerID)
	b.WriteString(`">`)
	b.Write(r.Inner)
	b.WriteString("</PartnerRequest>")
	return b.Bytes()
}

// Envelope is a signed document's top-level element, as read.
type Envelope struct {
	Name      string // PartnerRequest or PartnerResponse
	Signature string
	// ID is the request's id, or the response's request_id.
	ID           int64
	SSOPartnerID string
	// Inner is the element's body as sent, byte for byte: what the
	// signature covers.
	Inner []byte
}

// ErrMalformed is a document that is not one signed element.
var ErrMalformed = errors.New("malformed")

// ReadEnvelope reads a whole document (at most limit bytes) and finds its
// top-level element and inner body.
func ReadEnvelope(r io.Reader, limit int64) (*Envelope, error) {
	doc, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(doc)) > limit {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, limit)
	}
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var env *Envelope
	var start int64
	depth := 0
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				if env != nil {
					return nil, fmt.Errorf("%w: a second top-level element <%s>", ErrMalformed, t.Name.Local)
				}
				env, start = &Envelope{Name: t.Name.Local}, dec.InputOffset()
				if err := env.attributes(t.Attr); err != nil {
					return nil, err
				}
			}
			depth++
		case xml.EndElement:
			depth--
			if depth == 0 {
				env.Inner = doc[start:before]
			}
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("%w: text outside the top-level element", ErrMalformed)
			}
		case xml.Directive:
			// A DOCTYPE could declare entities; the spec's documents have none.
			return nil, fmt.Errorf("%w: a <!...> directive (a DOCTYPE) is not allowed", ErrMalformed)
		}
		if depth > maxDepth {
			return nil, fmt.Errorf("%w: nested deeper than %d elements", ErrMalformed, maxDepth)
		}
	}
	if env == nil || env.Inner == nil {
		return nil, fmt.Errorf("%w: no top-level element", ErrMalformed)
	}
	return env, nil
}

// maxDepth bounds nesting: the spec's deepest is 6 (PartnerResponse,
// Accounts, Account, AccountBalances, AccountBalance, BalanceType).
const maxDepth = 32

func (e *Envelope) attributes(attrs []xml.Attr) error {
	for _, a := range attrs {
		switch a.Name.Local {
		case "signature":
			e.Signature = a.Value
		case "id", "request_id":
			id, err := strconv.ParseInt(strings.TrimSpace(a.Value), 10, 64)
			if err != nil {
				return fmt.Errorf("%w: %s %q is not an integer", ErrMalformed, a.Name.Local, a.Value)
			}
			e.ID = id
		case "sso_partner_id":
			e.SSOPartnerID = a.Value
		}
	}
	return nil
}

// ErrRequestID is a response whose request_id is not the request's id.
var ErrRequestID = errors.New("request_id is not the request's id")

// CheckResponse holds a response to the request it answers: a
// <PartnerResponse>, with the request's id and a good signature.
func (e *Envelope) CheckResponse(requestID int64, key []byte) error {
	switch {
	case e.Name != "PartnerResponse":
		return fmt.Errorf("%w: the top-level element is <%s>, not <PartnerResponse>", ErrMalformed, e.Name)
	case e.ID != requestID:
		return fmt.Errorf("%w: request_id %d, the request's id %d", ErrRequestID, e.ID, requestID)
	}
	return Verify(e.Inner, key, e.Signature)
}

// Response is the document a partner answers with, signed with key.
func Response(requestID int64, inner, key []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`<PartnerResponse signature="`)
	b.WriteString(Sign(inner, key))
	b.WriteString(`" request_id="`)
	b.WriteString(strconv.FormatInt(requestID, 10))
	b.WriteString(`">`)
	b.Write(inner)
	b.WriteString("</PartnerResponse>")
	return b.Bytes()
}
