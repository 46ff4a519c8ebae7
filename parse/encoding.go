package parse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"

	"golang.org/x/text/encoding/ianaindex"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

var encodingDecl = regexp.MustCompile(`^<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']`)

// utf8Reader returns br (sniff's) as UTF-8: a UTF-8 byte order mark is
// dropped, a UTF-16 one selects UTF-16, and an encoding named in the XML
// declaration (bank exports often say ISO-8859-1 or windows-1252) is
// transcoded.
func utf8Reader(br *bufio.Reader) (io.Reader, string, error) {
	head, _ := br.Peek(1024)
	switch {
	case bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}):
		_, _ = br.Discard(3)
		head = head[3:]
	case bytes.HasPrefix(head, []byte{0xFE, 0xFF}), bytes.HasPrefix(head, []byte{0xFF, 0xFE}):
		dec := unicode.UTF16(unicode.BigEndian, unicode.ExpectBOM).NewDecoder()
		return transform.NewReader(br, dec), "UTF-16", nil
	}
	m := encodingDecl.FindSubmatch(head)
	if m == nil {
		return br, "UTF-8", nil
	}
	label := string(m[1])
	switch strings.ToLower(label) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return br, "UTF-8", nil
	}
	enc, err := ianaindex.IANA.Encoding(label)
	if err != nil || enc == nil {
		return nil, "", &SyntaxError{Line: 1, Msg: fmt.Sprintf("unsupported encoding %q in the XML declaration", label)}
	}
	return transform.NewReader(br, enc.NewDecoder()), label, nil
}
