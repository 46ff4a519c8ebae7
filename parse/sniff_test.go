package parse

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// A gzip file is read as the XML it holds.
func TestGzipIsInflatedAsItIsRead(t *testing.T) {
	plain, err := os.ReadFile("../fixtures/spec/combined.xml")
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := Collect(context.Background(), bytes.NewReader(plain), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := Collect(context.Background(), bytes.NewReader(gzipped(t, plain)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || got[0].User.PartnerCustomerID != want[0].User.PartnerCustomerID {
		t.Errorf("gzip gave %d records, plain %d", len(got), len(want))
	}
}

// Files that are not XML are refused by what they are.
func TestNotXMLIsNamed(t *testing.T) {
	zeros := make([]byte, 4096)
	bomb := []byte("<Users>" + strings.Repeat(" ", 100<<20) + "</Users>")
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"zip", []byte("PK\x03\x04\x14\x00\x00\x00rest"), "a zip archive"},
		{"pdf", []byte("%PDF-1.7\n"), "a PDF document"},
		{"bzip2", []byte("BZh91AY&SY"), "bzip2-compressed"},
		{"xz", []byte("\xfd7zXZ\x00\x00"), "xz-compressed"},
		{"zstd", []byte("\x28\xb5\x2f\xfd\x00"), "zstd-compressed"},
		{"binary", append([]byte("<Users>\n"), zeros...), "binary (a NUL byte at offset 8)"},
		{"gzip of zeros", gzipped(t, zeros), "binary once inflated"},
		{"gzip of a zip", gzipped(t, []byte("PK\x03\x04 rest")), "zip archive (or an Office document, which is one) once inflated"},
		{"gzip twice", gzipped(t, gzipped(t, []byte("<Users/>"))), "gzip inside gzip"},
		{"not gzip after all", []byte("\x1f\x8bnot really"), "starts as gzip but is not"},
		{"cut gzip", gzipped(t, bytes.Repeat([]byte("<Users><User></User></Users>"), 100))[:40], "the gzip stream ends early"},
		{"csv", []byte("account_id,amount\nA1,10.00\n"), `starts with "account_id,amount"`},
		{"gzip bomb", gzipped(t, bomb), "decompression bomb"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Collect(context.Background(), bytes.NewReader(tt.data), Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			var se *SyntaxError
			if strings.Contains(tt.want, "once inflated") || tt.name == "zip" || tt.name == "binary" {
				if !errors.As(err, &se) || se.Line < 1 {
					t.Errorf("%v is not a located *SyntaxError", err)
				}
			}
		})
	}
}
