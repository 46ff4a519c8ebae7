package money

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in           string
		cents, exact int64
		ok, exactOK  bool
	}{
		{"505.12", 50512, 50512, true, true},
		{"-1110.56", -111056, -111056, true, true},
		{"0.00", 0, 0, true, true},
		{"3", 300, 0, true, false},
		{"2.5", 250, 0, true, false},
		{"+1.20", 120, 0, true, false},
		{"1.005", 0, 0, false, false},
		{"1.", 0, 0, false, false},
		{".5", 0, 0, false, false},
		{"1e2", 0, 0, false, false},
		{"", 0, 0, false, false},
		{"-", 0, 0, false, false},
		{"1,000.00", 0, 0, false, false},
		{"12345678901234567.00", 0, 0, false, false},
		{"1234567890123456.99", 123456789012345699, 123456789012345699, true, true},
	} {
		got, err := Parse(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.cents) || (err != nil && !errors.Is(err, ErrSyntax)) {
			t.Errorf("Parse(%q) = %d, %v", c.in, got, err)
		}
		got, err = ParseExact(c.in)
		if (err == nil) != c.exactOK || (c.exactOK && got != c.exact) {
			t.Errorf("ParseExact(%q) = %d, %v", c.in, got, err)
		}
	}
}

func TestFormat(t *testing.T) {
	for c, want := range map[int64][2]string{
		123456: {"1234.56", "1234.56"}, -11203: {"-112.03", "-112.03"}, 0: {"0.00", "0.0"},
		100000: {"1000.00", "1000.0"}, 50: {"0.50", "0.5"}, -5: {"-0.05", "-0.05"}, 129196: {"1291.96", "1291.96"},
	} {
		if got := Format(c); got != want[0] {
			t.Errorf("Format(%d) = %s, want %s", c, got, want[0])
		}
		if got := FormatShort(c); got != want[1] {
			t.Errorf("FormatShort(%d) = %s, want %s", c, got, want[1])
		}
		if back, err := Parse(Format(c)); err != nil || back != c {
			t.Errorf("Parse(Format(%d)) = %d, %v", c, back, err)
		}
	}
}

func FuzzParseFormat(f *testing.F) {
	for _, s := range []string{"505.12", "-3", "2.5", "1e2", "+0.01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			return
		}
		if back, err := ParseExact(Format(c)); err != nil || back != c {
			t.Fatalf("%q: %d formats as %q, read back %d, %v", s, c, Format(c), back, err)
		}
	})
}
