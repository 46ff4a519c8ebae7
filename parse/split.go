package parse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// splitter cuts a UTF-8 XML byte stream into its top-level records (the
// children of the root element) without decoding them. It understands just
// enough XML to find element boundaries: comments, CDATA sections, processing
// instructions and quoted attribute values may contain '<' and '>'.
// Well-formedness inside a record is left to encoding/xml in the workers.
type splitter struct {
	window
	lim Limits

	state    splitState
	root     string
	rootLine int
}

type splitState int

const (
	inPrologue splitState = iota
	inBody
	inEpilogue
)

const readSize = 1 << 20

func newSplitter(r io.Reader, lim Limits) *splitter {
	return &splitter{window: newWindow(r, lim.MaxRecordBytes), lim: lim}
}

// window is a splitter's view of its input: a buffer that slides over the
// stream and grows to hold the record being scanned, with the offset and
// line of what it holds. Both the XML and the JSON splitters read through
// one.
type window struct {
	r         io.Reader
	maxRecord int // the buffer never grows past what a record this large needs

	buf      []byte
	pos      int   // next byte to look at
	end      int   // bytes of buf holding data
	base     int64 // file offset of buf[0]
	lineMark int   // position whose line number is line
	line     int
	eof      bool
}

func newWindow(r io.Reader, maxRecord int) window {
	return window{r: r, maxRecord: maxRecord, buf: make([]byte, 2*readSize), line: 1}
}

// lineAt returns the line of position p (p >= lineMark) and moves the mark there.
func (s *window) lineAt(p int) int {
	s.line += bytes.Count(s.buf[s.lineMark:p], []byte{'\n'})
	s.lineMark = p
	return s.line
}

func (s *window) errorAt(p int, format string, args ...any) error {
	line := s.lineAt(p)
	col := p - (bytes.LastIndexByte(s.buf[:p], '\n') + 1) + 1
	return &SyntaxError{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// fill reads more input, keeping buf[keep:end]. It reports false at end of input.
func (s *window) fill(keep int) (bool, error) {
	if s.eof {
		return false, nil
	}
	if keep > 0 {
		s.lineAt(keep)
		n := copy(s.buf, s.buf[keep:s.end])
		s.pos -= keep
		s.lineMark -= keep
		s.base += int64(keep)
		s.end = n
	}
	if len(s.buf)-s.end < readSize {
		// Doubling, but never past what the largest record allowed needs:
		// a 64 MiB record once grew it to 128 MiB, both copies alive.
		size := min(2*len(s.buf), s.maxRecord+2*readSize)
		grown := make([]byte, max(size, s.end+readSize))
		copy(grown, s.buf[:s.end])
		s.buf = grown
	}
	n, err := io.ReadAtLeast(s.r, s.buf[s.end:], 1)
	s.end += n
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		s.eof = true
		return n > 0, nil
	}
	if err != nil {
		return false, fmt.Errorf("read: %w", err)
	}
	return true, nil
}

type markupKind int

const (
	startTag markupKind = iota
	emptyTag            // <Foo/>
	endTag
	skippable // comment, processing instruction
	cdataSection
	declaration // <!DOCTYPE, <!ENTITY, ...
)

// markup measures the markup at b[0] == '<'. n == 0 means b ends before it does.
func markup(b []byte) (n int, kind markupKind) {
	if len(b) < 2 {
		return 0, 0
	}
	closeAfter := func(from int, end string) int {
		if i := bytes.Index(b[from:], []byte(end)); i >= 0 {
			return from + i + len(end)
		}
		return 0
	}
	switch b[1] {
	case '/':
		if i := bytes.IndexByte(b, '>'); i >= 0 {
			return i + 1, endTag
		}
		return 0, endTag
	case '?':
		return closeAfter(2, "?>"), skippable
	case '!':
		switch {
		case bytes.HasPrefix(b, []byte("<!--")):
			return closeAfter(4, "-->"), skippable
		case bytes.HasPrefix(b, []byte("<![CDATA[")):
			return closeAfter(9, "]]>"), cdataSection
		case len(b) < 9 && (bytes.HasPrefix([]byte("<!--"), b) || bytes.HasPrefix([]byte("<![CDATA["), b)):
			return 0, declaration
		}
		return len(b), declaration
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; c {
		case '"', '\'':
			j := bytes.IndexByte(b[i+1:], c)
			if j < 0 {
				return 0, startTag
			}
			i += j + 1
		case '>':
			if b[i-1] == '/' {
				return i + 1, emptyTag
			}
			return i + 1, startTag
		}
	}
	return 0, startTag
}

func tagName(tag []byte) string {
	name := tag[1:]
	if name[0] == '/' {
		name = name[1:]
	}
	if i := bytes.IndexAny(name, " \t\r\n/>"); i >= 0 {
		name = name[:i]
	}
	return string(name)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// next returns the next top-level record's bytes (valid until the following
// call) and its location, or io.EOF after the root element closed cleanly.
func (s *splitter) next() ([]byte, Location, error) {
	for {
		for s.pos < s.end && isSpace(s.buf[s.pos]) {
			s.pos++
		}
		if s.pos == s.end {
			more, err := s.fill(s.pos)
			if err != nil {
				return nil, Location{}, err
			}
			if !more {
				return nil, Location{}, s.atEOF()
			}
			continue
		}
		if s.buf[s.pos] != '<' {
			return nil, Location{}, s.strayText()
		}
		n, kind := markup(s.buf[s.pos:s.end])
		if n == 0 {
			more, err := s.fill(s.pos)
			if err != nil {
				return nil, Location{}, err
			}
			if !more {
				return nil, Location{}, s.errorAt(s.pos, "unexpected end of file inside markup")
			}
			continue
		}
		switch kind {
		case declaration:
			return nil, Location{}, s.errorAt(s.pos, "DOCTYPE and entity declarations are not allowed")
		case skippable:
			s.pos += n
			continue
		case cdataSection:
			return nil, Location{}, s.errorAt(s.pos, "unexpected CDATA section outside a record")
		case endTag:
			if s.state != inBody {
				return nil, Location{}, s.errorAt(s.pos, "unexpected end tag </%s>", tagName(s.buf[s.pos:]))
			}
			if name := tagName(s.buf[s.pos:]); name != s.root {
				return nil, Location{}, s.errorAt(s.pos, "element <%s> opened at line %d is closed by </%s>", s.root, s.rootLine, name)
			}
			s.pos += n
			s.state = inEpilogue
			continue
		}
		switch s.state {
		case inPrologue:
			s.root = tagName(s.buf[s.pos:])
			s.rootLine = s.lineAt(s.pos)
			s.pos += n
			s.state = inBody
			if kind == emptyTag {
				s.state = inEpilogue
			}
			continue
		case inEpilogue:
			return nil, Location{}, s.errorAt(s.pos, "content after the root element </%s>", s.root)
		}
		return s.record()
	}
}

func (s *splitter) strayText() error {
	switch s.state {
	case inPrologue:
		// Not XML at all, most often: say what it starts with.
		end := min(s.end, s.pos+40)
		if i := bytes.IndexByte(s.buf[s.pos:end], '\n'); i >= 0 {
			end = s.pos + i
		}
		return s.errorAt(s.pos, "text before the root element: the file starts with %q, not XML markup (is it CSV or another format?)", s.buf[s.pos:end])
	case inEpilogue:
		return s.errorAt(s.pos, "content after the root element </%s>", s.root)
	}
	end := min(s.end, s.pos+20)
	if i := bytes.IndexByte(s.buf[s.pos:end], '<'); i >= 0 {
		end = s.pos + i
	}
	return s.errorAt(s.pos, "unexpected text %q between records", s.buf[s.pos:end])
}

func (s *splitter) atEOF() error {
	switch s.state {
	case inPrologue:
		if s.root == "" {
			return s.errorAt(s.pos, "no root element: the file is empty or not XML")
		}
	case inBody:
		return s.errorAt(s.pos, "unexpected end of file: <%s> opened at line %d is not closed (truncated file?)", s.root, s.rootLine)
	}
	return io.EOF
}

// maxRun is how many bytes of text, or of one piece of markup, the
// splitter reads without a '<' or the markup's end: eight times the text
// limit, as text with entities (&amp;, &#65;) is longer written than read.
// The decoder enforces the text limit itself; this only keeps a 200 MB
// text node from being read whole before it is refused.
func (s *splitter) maxRun() int { return 8 * s.lim.MaxTextBytes }

// record scans one top-level element starting at s.pos.
func (s *splitter) record() ([]byte, Location, error) {
	start := s.pos
	loc := Location{Line: s.lineAt(start), Offset: s.base + int64(start)}
	name := tagName(s.buf[start:])
	// inside is the last tag seen, text where the current text (or markup)
	// began: positions in buf, moved with it.
	scan, depth, inside, text := start, 0, start, start
	for {
		if scan-start > s.lim.MaxRecordBytes {
			return nil, loc, s.errorAt(start, "record <%s> is larger than the limit of %d bytes", name, s.lim.MaxRecordBytes)
		}
		i := bytes.IndexByte(s.buf[scan:s.end], '<')
		n, kind := 0, startTag
		if i >= 0 {
			scan += i
			if scan-text > s.maxRun() {
				return nil, loc, s.errorAt(text, "text near <%s> is longer than %d bytes; the limit of a field's text is %d bytes", tagName(s.buf[inside:]), s.maxRun(), s.lim.MaxTextBytes)
			}
			text = scan
			n, kind = markup(s.buf[scan:s.end])
		} else {
			scan = s.end
		}
		if n == 0 {
			// The text, or the markup, that goes on past what was read.
			if s.end-text > s.maxRun() {
				what := "text near <" + tagName(s.buf[inside:]) + ">"
				if i >= 0 {
					what = "markup (an unclosed comment, CDATA section or tag?)"
				}
				return nil, loc, s.errorAt(text, "%s is longer than %d bytes; the limit of a field's text is %d bytes", what, s.maxRun(), s.lim.MaxTextBytes)
			}
			delta := start
			more, err := s.fill(start)
			if err != nil {
				return nil, loc, err
			}
			start, scan, inside, text = start-delta, scan-delta, inside-delta, text-delta
			if !more {
				return nil, loc, s.errorAt(scan, "unexpected end of file inside <%s> that starts at line %d (truncated file?)", name, loc.Line)
			}
			continue
		}
		switch kind {
		case startTag:
			depth++
			if depth+1 > s.lim.MaxDepth {
				return nil, loc, s.errorAt(scan, "elements nested deeper than %d levels", s.lim.MaxDepth)
			}
			inside = scan
		case endTag:
			depth--
			inside = scan
		case declaration:
			return nil, loc, s.errorAt(scan, "DOCTYPE and entity declarations are not allowed")
		}
		scan += n
		text = scan
		if depth == 0 {
			s.pos = scan
			return s.buf[start:scan], loc, nil
		}
	}
}

// handOver gives the caller the buffer the last record lies in, so a large
// record is not copied again: the splitter goes on in a new buffer with
// what followed the record. The record's bytes stay valid for good.
func (s *window) handOver() {
	s.lineAt(s.pos)
	tail := s.buf[s.pos:s.end]
	fresh := make([]byte, max(2*readSize, len(tail)+readSize))
	s.end = copy(fresh, tail)
	s.base += int64(s.pos)
	s.buf, s.pos, s.lineMark = fresh, 0, 0
}
