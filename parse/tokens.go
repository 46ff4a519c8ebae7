package parse

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// The record walker reads tokens from one of two sources over the same chunk:
//
//   - plainTokens, a fast path for the plain XML that bank exports are made
//     of: elements without attributes or namespaces, text with at most the
//     predefined entities and character references. It gives up on anything
//     else, without deciding whether it is valid.
//   - xmlTokens, encoding/xml: the reference. A chunk the fast path gives up
//     on is decoded again by encoding/xml, which accepts what XML allows and
//     reports errors with their line and column.
//
// encoding/xml alone decodes about 50 MB/s per core; on two cores shared with
// the warehouse that caps ingest below its target. FuzzPlainTokens checks
// that the fast path accepts nothing encoding/xml rejects and that both
// produce the same records.

type tokenKind uint8

const (
	tokStart tokenKind = iota + 1
	tokEnd
	tokText
)

type token struct {
	kind tokenKind
	name string // local name of start and end tags
	text string // text, entities decoded
}

type tokenSource interface {
	next() (token, error)
	// pos is the position after the last token: the line within the
	// chunk (1-based), the column, and the offset within the chunk.
	pos() (line, col int, offset int64)
}

// errNotPlain: the fast path met something it leaves to encoding/xml.
var errNotPlain = errors.New("parse: not plain XML")

// xmlTokens adapts encoding/xml's RawToken, adding what RawToken does not
// check: that end tags match start tags, and the depth limit.
type xmlTokens struct {
	dec      *xml.Decoder
	maxDepth int
	stack    []xml.Name
	errorf   func(format string, args ...any) error
}

func (x *xmlTokens) pos() (int, int, int64) {
	line, col := x.dec.InputPos()
	return line, col, x.dec.InputOffset()
}

func (x *xmlTokens) next() (token, error) {
	for {
		tok, err := x.dec.RawToken()
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return token{}, x.errorf("%s", se.Msg)
			}
			if errors.Is(err, io.EOF) {
				return token{}, x.errorf("unexpected end of record")
			}
			return token{}, x.errorf("%v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			x.stack = append(x.stack, t.Name)
			if len(x.stack)+1 > x.maxDepth {
				return token{}, x.errorf("elements nested deeper than %d levels", x.maxDepth)
			}
			return token{kind: tokStart, name: t.Name.Local}, nil
		case xml.EndElement:
			top := x.stack[len(x.stack)-1]
			if top != t.Name {
				return token{}, x.errorf("element <%s> closed by </%s>", qname(top), qname(t.Name))
			}
			x.stack = x.stack[:len(x.stack)-1]
			return token{kind: tokEnd, name: t.Name.Local}, nil
		case xml.CharData:
			return token{kind: tokText, text: string(t)}, nil
		case xml.Directive:
			return token{}, x.errorf("DOCTYPE and entity declarations are not allowed")
		}
		// Comments and processing instructions carry nothing.
	}
}

func qname(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}

// plainTokens scans a chunk held as a string: names and texts are substrings
// of it, so a field costs no copy.
type plainTokens struct {
	s        string
	i        int
	line     int // line of s[i], 1-based
	lineAt   int // offset where that line starts
	maxDepth int
	stack    []string
	closing  bool // a self-closing tag owes its end tag
}

func newPlainTokens(s string, maxDepth int) *plainTokens {
	return &plainTokens{s: s, line: 1, maxDepth: maxDepth}
}

func (p *plainTokens) pos() (int, int, int64) {
	return p.line, p.i - p.lineAt + 1, int64(p.i)
}

func (p *plainTokens) next() (token, error) {
	if p.closing {
		p.closing = false
		return p.pop()
	}
	if p.i >= len(p.s) {
		return token{}, errNotPlain
	}
	if p.s[p.i] != '<' {
		return p.text()
	}
	p.i++
	if p.i < len(p.s) && p.s[p.i] == '/' {
		p.i++
		name, ok := p.name()
		if !ok || !p.space() || !p.expect('>') || len(p.stack) == 0 || p.stack[len(p.stack)-1] != name {
			return token{}, errNotPlain
		}
		return p.pop()
	}
	name, ok := p.name()
	if !ok || !p.space() {
		return token{}, errNotPlain
	}
	if p.i < len(p.s) && p.s[p.i] == '/' {
		p.i++
		p.closing = true
	}
	if !p.expect('>') {
		return token{}, errNotPlain
	}
	p.stack = append(p.stack, name)
	if len(p.stack)+1 > p.maxDepth {
		return token{}, errNotPlain
	}
	return token{kind: tokStart, name: name}, nil
}

func (p *plainTokens) pop() (token, error) {
	name := p.stack[len(p.stack)-1]
	p.stack = p.stack[:len(p.stack)-1]
	return token{kind: tokEnd, name: name}, nil
}

// name reads an ASCII name without a namespace prefix.
func (p *plainTokens) name() (string, bool) {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' ||
			p.i > start && ('0' <= c && c <= '9' || c == '-' || c == '.') {
			p.i++
			continue
		}
		break
	}
	return p.s[start:p.i], p.i > start
}

// space skips white space inside a tag.
func (p *plainTokens) space() bool {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case '\n':
			p.newline(p.i)
		case ' ', '\t', '\r':
		default:
			return true
		}
		p.i++
	}
	return true
}

func (p *plainTokens) expect(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *plainTokens) newline(at int) {
	p.line++
	p.lineAt = at + 1
}

// text reads character data up to the next tag, as encoding/xml would
// return it: entities decoded, CR LF and lone CR turned into LF.
func (p *plainTokens) text() (token, error) {
	start := p.i
	rewrite := false // entities or CR: the text differs from its bytes
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '<':
			t := p.s[start:p.i]
			if rewrite {
				var ok bool
				if t, ok = unescape(t); !ok {
					return token{}, errNotPlain
				}
			}
			return token{kind: tokText, text: t}, nil
		case c == '\n':
			p.newline(p.i)
		case c == '&' || c == '\r':
			rewrite = true
		case c == '>':
			if p.i >= start+2 && p.s[p.i-1] == ']' && p.s[p.i-2] == ']' {
				return token{}, errNotPlain // "]]>" is an error outside CDATA
			}
		case c < 0x20 && c != '\t':
			return token{}, errNotPlain
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(p.s[p.i:])
			if r == utf8.RuneError && size == 1 || !inCharacterRange(r) {
				return token{}, errNotPlain
			}
			p.i += size
			continue
		}
		p.i++
	}
	return token{}, errNotPlain // a record ends with a tag
}

// unescape decodes the predefined entities and character references that
// XML allows in plain text, and normalizes line ends; anything else is not
// plain.
func unescape(s string) (string, bool) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\r':
			b.WriteByte('\n')
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			continue
		case '&':
		default:
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i:], ';')
		if end < 0 {
			return "", false
		}
		ref := s[i+1 : i+end]
		r, ok := predefined[ref]
		if !ok {
			r, ok = charRef(ref)
		}
		if !ok {
			return "", false
		}
		b.WriteRune(r)
		i += end
	}
	return b.String(), true
}

var predefined = map[string]rune{"lt": '<', "gt": '>', "amp": '&', "apos": '\'', "quot": '"'}

// charRef decodes "#65" or "#x41" to a character XML allows.
func charRef(ref string) (rune, bool) {
	if len(ref) < 2 || ref[0] != '#' {
		return 0, false
	}
	digits, base := ref[1:], rune(10)
	if digits[0] == 'x' {
		digits, base = digits[1:], 16
	}
	if len(digits) == 0 || len(digits) > 8 {
		return 0, false
	}
	var r rune
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		var d rune
		switch {
		case '0' <= c && c <= '9':
			d = rune(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = rune(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = rune(c-'A') + 10
		default:
			return 0, false
		}
		r = r*base + d
	}
	// Surrogates would become U+FFFD in encoding/xml: leave them to it.
	if r >= 0xD800 && r <= 0xDFFF || !inCharacterRange(r) {
		return 0, false
	}
	return r, true
}

// inCharacterRange is XML's Char production, as encoding/xml applies it.
func inCharacterRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
