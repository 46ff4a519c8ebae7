package parse

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// notXML names the formats partners send by mistake, by their first
// bytes, so the refusal says what the file is rather than where XML
// parsing first stumbled.
var notXML = []struct {
	magic string
	what  string
}{
	{"PK\x03\x04", "a zip archive (or an Office document, which is one)"},
	{"PK\x05\x06", "an empty zip archive"},
	{"BZh", "bzip2-compressed"},
	{"\xfd7zXZ\x00", "xz-compressed"},
	{"\x28\xb5\x2f\xfd", "zstd-compressed"},
	{"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"},
	{"Rar!\x1a\x07", "a RAR archive"},
	{"%PDF-", "a PDF document"},
	{"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office document (.xls, .doc)"},
}

var gzipMagic = []byte{0x1f, 0x8b}

// maxInflation is how many times its size a gzip file may inflate: XML
// bank exports inflate 5 to 20 times; far more is a decompression bomb.
const maxInflation = 200

// sniff returns the file's bytes as text, buffered once for utf8Reader: a
// gzip file is inflated as it is read (the MD5 a partner notifies is of what
// was uploaded), and a file that is not text at all is refused, named.
func sniff(r io.Reader) (*bufio.Reader, error) {
	br := bufio.NewReaderSize(r, 4096)
	head, _ := br.Peek(1024)
	if bytes.HasPrefix(head, gzipMagic) {
		compressed := &countReader{r: br}
		zr, err := gzip.NewReader(compressed)
		if err != nil {
			return nil, &SyntaxError{Line: 1, Msg: fmt.Sprintf("the file starts as gzip but is not: %v", err)}
		}
		inflated := bufio.NewReaderSize(&bombGuard{r: zr, compressed: compressed}, 4096)
		head, _ = inflated.Peek(1024)
		if err := refuseBinary(head, " once inflated"); err != nil {
			return nil, err
		}
		return inflated, nil
	}
	if err := refuseBinary(head, ""); err != nil {
		return nil, err
	}
	return br, nil
}

func refuseBinary(head []byte, after string) error {
	for _, f := range notXML {
		if bytes.HasPrefix(head, []byte(f.magic)) {
			return &SyntaxError{Line: 1, Column: 1, Msg: fmt.Sprintf("the file is %s%s, not XML: send the XML file itself (gzip is accepted)", f.what, after)}
		}
	}
	if bytes.HasPrefix(head, gzipMagic) {
		return &SyntaxError{Line: 1, Column: 1, Msg: "the file is gzip inside gzip: compress the XML once"}
	}
	// XML text has no NUL byte in any encoding but UTF-16 and UTF-32, which
	// start with a byte order mark.
	utf16 := bytes.HasPrefix(head, []byte{0xfe, 0xff}) || bytes.HasPrefix(head, []byte{0xff, 0xfe})
	if i := bytes.IndexByte(head, 0); i >= 0 && !utf16 {
		return &SyntaxError{Line: 1 + bytes.Count(head[:i], []byte{'\n'}), Column: i - bytes.LastIndexByte(head[:i], '\n'),
			Msg: fmt.Sprintf("the file is binary%s (a NUL byte at offset %d), not XML text", after, i)}
	}
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// errBomb refuses a gzip file that inflates past maxInflation times its size.
var errBomb = errors.New("the gzip file inflates more than 200 times its size: refused as a decompression bomb")

// errCutGzip: the splitter would call a cut gzip stream a truncated file
// too, but could not say why.
var errCutGzip = errors.New("the gzip stream ends early: the file was cut (an upload that did not finish?)")

type bombGuard struct {
	r          io.Reader
	compressed *countReader
	inflated   int64
}

func (b *bombGuard) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = errCutGzip
	}
	b.inflated += int64(n)
	if b.inflated > 64<<20 && b.inflated > maxInflation*b.compressed.n {
		return n, errBomb
	}
	return n, err
}
