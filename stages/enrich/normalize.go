package enrich

// Memos are normalized into tokens over one upper-cased copy of the memo.
// Everything here works on the Enricher's scratch buffers, so the hot path
// allocates nothing; strings are made only for a memo no dictionary names.

// token is one word of a memo: a run of letters, digits, apostrophes and
// ampersands. Its span indexes the upper-cased memo.
type token struct {
	start, end int32
	flags      uint16
}

const (
	hasDigit   uint16 = 1 << iota // an id, store number, date, amount, phone or masked card
	hasLetter                     //
	afterStar                     // the first word after '*': an order id if it has digits
	beforeStar                    // directly followed by '*': a processor prefix (SQ *, TST*)
	label                         // directly followed by ':' (DES:, ID:, INDN:)
	domain                        // a domain suffix after '.', as in NETFLIX.COM
	afterHash                     // directly after '#': a store or reference number
	afterDash                     // after " - ": a location or department suffix (BISTRO - DOWNTOWN)
	beforeHash                    // directly followed by '#': a label (C#4412, TRACE#)
)

// tokenize upper-cases memo into e.upper and splits it into e.tokens.
func (e *Enricher) tokenize(memo string) {
	upper, tokens := e.upper[:0], e.tokens[:0]
	// Trailing blanks (fixed-width padding) change nothing: skip them.
	n := len(memo)
	for n > 0 && (memo[n-1] == ' ' || memo[n-1] == '\t') {
		n--
	}
	var prev byte = ' '
	spacesOnly := false // since the last word: SQ *X, like SQ*X, has a processor prefix
	spacedDash := false // a '-' after a space: the next word starts a suffix
	for i := 0; i < n; {
		c := memo[i]
		if byteClass[c] == separator || c == '\'' {
			// Between words. An apostrophe starts no word (MCDONALD'S keeps
			// its own); an ampersand does, alone (BARNES & NOBLE).
			if c != '\'' {
				if c == '*' && spacesOnly && len(tokens) > 0 {
					tokens[len(tokens)-1].flags |= beforeStar
				}
				if c == '-' && spacesOnly && len(tokens) > 0 {
					spacedDash = true
				}
				if c != ' ' && c != '\t' {
					spacesOnly = false
				}
			}
			prev = c
			i++
			continue
		}
		start := len(upper)
		flags := opener(prev, &spacedDash)
		for ; i < n; i++ {
			k := byteClass[memo[i]]
			if k == separator {
				break
			}
			upper = append(upper, upperOf[memo[i]])
			flags |= classFlags[k]
		}
		// The separator that ends a word says what the word is.
		prev = ' '
		if i < n {
			prev = memo[i]
			i++
		}
		switch prev {
		case '*':
			flags |= beforeStar
		case ':':
			flags |= label
		case '#':
			flags |= beforeHash
		}
		tokens = append(tokens, token{start: int32(start), end: int32(len(upper)), flags: flags})
		spacesOnly = prev == ' ' || prev == '\t'
	}
	e.upper, e.tokens, e.classified = upper, tokens, false
	// A domain suffix is only known once its word is read.
	for i := range e.tokens {
		t := &e.tokens[i]
		if t.flags&domain != 0 && !isDomainSuffix(e.word(i)) {
			t.flags &^= domain
		}
	}
}

// Classes of memo bytes: one table lookup instead of a chain of range tests.
const (
	separator = iota
	lower
	letter // upper case, or a byte of a UTF-8 sequence
	digit
	joiner // ' & +: part of a word
)

var byteClass = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c >= 'a' && c <= 'z':
			t[c] = lower
		case c >= 'A' && c <= 'Z', c >= 0x80:
			t[c] = letter
		case c >= '0' && c <= '9':
			t[c] = digit
		case c == '\'' || c == '&' || c == '+':
			t[c] = joiner
		}
	}
	return t
}()

// upperOf upper-cases ASCII letters; classFlags are the flags a byte of
// each class gives its word.
var (
	upperOf = func() (t [256]byte) {
		for c := range t {
			t[c] = byte(c)
			if byteClass[c] == lower {
				t[c] -= 'a' - 'A'
			}
		}
		return t
	}()
	classFlags = [...]uint16{lower: hasLetter, letter: hasLetter, digit: hasDigit, joiner: 0}
)

// opener returns the flags a word gets from the separator before it.
func opener(prev byte, spacedDash *bool) uint16 {
	if *spacedDash {
		*spacedDash = false
		return afterDash
	}
	switch prev {
	case '*':
		return afterStar
	case '#':
		return afterHash
	case '.':
		return domain
	}
	return 0
}

func isDomainSuffix(w []byte) bool {
	switch string(w) {
	case "COM", "NET", "ORG", "IO", "CO", "US", "TV":
		return true
	}
	return false
}

func (e *Enricher) word(i int) []byte {
	t := e.tokens[i]
	return e.upper[t.start:t.end]
}

// key appends the word's matching form, apostrophes dropped (MCDONALD'S ~
// MCDONALDS, TRADER JOE'S ~ TRADER JOES).
func appendKey(dst, w []byte) []byte {
	for _, c := range w {
		if c != '\'' {
			dst = append(dst, c)
		}
	}
	return dst
}

// Words that say how a payment was made, not who was paid. They lead
// memos (POS DEBIT, CHECKCARD 0412, PURCHASE AUTHORIZED ON 04/12) and are
// left out of the cleaned name.
var leadingNoise = set(
	"POS", "DEBIT", "CREDIT", "CARD", "CHECKCARD", "CHKCARD", "PURCHASE", "PURCH", "PUR", "AUTHORIZED", "AUTH",
	"ON", "ACH", "RECURRING", "RECUR", "VISA", "DDA", "DBT", "CRD", "PREAUTHORIZED", "PRE",
	"ELECTRONIC", "EXTERNAL", "WITHDRAWAL", "WITHDRWL", "PIN", "SIG", "POINT", "OF", "SALE", "MC", "MASTERCARD",
	"INTL", "INTERNATIONAL", "WEB", "PPD", "CCD", "ORIG", "CO", "NAME", "XXXX", "XXXXXX", "XXXXXXXXXXXX", "-",
)

// Processor prefixes precede the merchant's own name with a '*': SQ *BLUE
// BOTTLE, TST* SHAKE SHACK, PAYPAL *NETFLIX, PP*SPOTIFY.
var processors = set("SQ", "SQU", "TST", "PAYPAL", "PP", "SP", "PY", "IN", "BT", "FS", "EB", "CKE", "SMK", "DNH",
	"IC", "PAR", "LS", "TOAST", "CLOVER", "POYNT", "SUMUP", "ZETTLE", "WPY", "GOOGLE")

// Field labels of ACH memos (DES:PAYROLL ID:1234 INDN:DOE JOHN CO ID:99 PPD):
// the payee's name ends where they begin.
var achLabels = set("DES", "ID", "INDN", "SEC", "TRACE", "EED", "IND", "TRN", "DESCR", "ENTRY", "CONF", "REF",
	"REFERENCE", "PPD", "CCD", "WEB", "TEL")

// Words that trail a name without being part of it.
var trailingNoise = set("PPD", "CCD", "WEB", "TEL", "ID", "CO", "ST", "STORE", "STR", "NO", "LLC", "INC", "ORIG",
	"REF", "WWW", "USA", "US", "-", "&", "DEBIT", "CREDIT", "POS", "PURCHASE", "ACH")

// US state and territory codes, to drop the trailing "CITY ST" of card memos.
var states = set("AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
	"KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC",
	"ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "PR")

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// What the words of the sets above are, and the keyword bits (see
// keywordBits), in one table: a memo's words are looked up once each.
const (
	wLeadingNoise uint64 = 1 << (32 + iota)
	wProcessor
	wACHLabel
	wTrailingNoise
	wState
)

var vocabulary = func() map[string]uint64 {
	v := map[string]uint64{}
	for w, bits := range keywordBits {
		v[w] |= uint64(bits)
	}
	for kind, words := range map[uint64]map[string]bool{wLeadingNoise: leadingNoise, wProcessor: processors,
		wACHLabel: achLabels, wTrailingNoise: trailingNoise, wState: states} {
		for w := range words {
			v[w] |= kind
		}
	}
	return v
}()

// classify sets e.kinds: each word's vocabulary bits. No vocabulary word
// has a digit.
func (e *Enricher) classify() {
	if e.classified {
		return
	}
	e.kinds = e.kinds[:0]
	for i := range e.tokens {
		var k uint64
		if e.tokens[i].flags&hasDigit == 0 {
			k = vocabulary[string(e.word(i))]
		}
		e.kinds = append(e.kinds, k)
	}
	e.classified = true
}

// span is the part of the memo that names the payee: [first, last) over
// e.tokens, with ids and noise words to be skipped inside it.
func (e *Enricher) nameSpan() (first, last int) {
	e.classify()
	n := len(e.tokens)
	first = 0
	// CHASE ACH: ORIG CO NAME:ACME CORP ORIG ID:...: the name follows the label.
	for i := 0; i+2 < n; i++ {
		if string(e.word(i)) == "NAME" && e.tokens[i].flags&label != 0 {
			first = i + 1
			break
		}
	}
	for first < n {
		t := e.tokens[first]
		w := e.word(first)
		switch {
		case t.flags&beforeStar != 0 && e.kinds[first]&wProcessor != 0 && first+1 < n:
			first++
		case e.kinds[first]&wLeadingNoise != 0 || t.flags&hasDigit != 0 || len(w) == 1 && !isAlnum(w[0]):
			first++
		case first > 0 && first+1 < n && (string(w) == "PAYMENT" || string(w) == "PMT"):
			first++ // RECURRING PAYMENT, ACH PMT: how, not who
		default:
			goto lead
		}
	}
lead:
	// The name ends at the first id after it (a store number, address,
	// phone or order id) or at the first ACH field label.
	last = n
	for i := first + 1; i < n; i++ {
		t := e.tokens[i]
		if t.flags&(hasDigit|beforeHash) != 0 || t.flags&afterDash != 0 && i-first >= 2 ||
			t.flags&label != 0 && e.kinds[i]&wACHLabel != 0 {
			last = i
			break
		}
	}
	// Trailing ids, then CITY ST, then noise: a state code is also a word
	// (CO), so it is looked for before noise is dropped.
	trim := func(noise bool) {
		for last > first {
			t := e.tokens[last-1]
			w := e.word(last - 1)
			if t.flags&(hasDigit|domain|afterHash) != 0 || noise && e.kinds[last-1]&wTrailingNoise != 0 || len(w) == 1 && !isAlnum(w[0]) {
				last--
				continue
			}
			break
		}
	}
	trim(false)
	if last-first >= 3 && e.kinds[last-1]&wState != 0 {
		last--
		trim(false)
		if k := cityWords(e, first, last); k > 0 {
			last -= k
		} else if last-first >= 3 {
			last--
		}
	}
	trim(true)
	return first, last
}

func isAlnum(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// cityWords returns how many words before last form a known city of more
// than one word (SAN FRANCISCO, SALT LAKE CITY), leaving at least one word.
func cityWords(e *Enricher, first, last int) int {
	for k := 3; k >= 2; k-- {
		if last-k <= first {
			continue
		}
		e.scratch = e.scratch[:0]
		for i := last - k; i < last; i++ {
			if i > last-k {
				e.scratch = append(e.scratch, ' ')
			}
			e.scratch = append(e.scratch, e.word(i)...)
		}
		if multiWordCities[string(e.scratch)] {
			return k
		}
	}
	return 0
}

var multiWordCities = set("SAN FRANCISCO", "SAN DIEGO", "SAN JOSE", "SAN ANTONIO", "LOS ANGELES", "LAS VEGAS",
	"NEW YORK", "NEW ORLEANS", "SALT LAKE CITY", "SALT LAKE", "KANSAS CITY", "ST LOUIS", "SAINT LOUIS", "ST PAUL",
	"FORT WORTH", "FT WORTH", "EL PASO", "OKLAHOMA CITY", "LONG BEACH", "VIRGINIA BEACH", "COLORADO SPRINGS",
	"SANTA ANA", "SANTA MONICA", "SANTA CLARA", "SANTA BARBARA", "SAN MATEO", "PALO ALTO", "MOUNTAIN VIEW",
	"NEWPORT BEACH", "BATON ROUGE", "GRAND RAPIDS", "DES MOINES", "LITTLE ROCK", "JERSEY CITY", "ST PETERSBURG",
	"FORT LAUDERDALE", "FT LAUDERDALE", "WEST PALM BEACH", "PALM BEACH", "BEVERLY HILLS", "SIOUX FALLS",
	"ANN ARBOR", "CORPUS CHRISTI", "CHULA VISTA", "NORTH LAS VEGAS", "SAN BERNARDINO", "CAPE CORAL",
	"FORT MYERS", "FORT COLLINS", "CEDAR RAPIDS", "SPRING HILL", "DALY CITY", "REDWOOD CITY", "CULVER CITY",
	"SILVER SPRING", "LONG ISLAND CITY", "STATEN ISLAND", "WEST HOLLYWOOD", "NORTH HOLLYWOOD", "CHAPEL HILL",
	"ROUND ROCK", "SUGAR LAND", "THE WOODLANDS", "PEMBROKE PINES", "CORAL SPRINGS", "BOCA RATON",
	"PORT ST LUCIE", "ST CLOUD", "EAU CLAIRE", "LA JOLLA", "LA MESA", "EL CAJON", "SAN LEANDRO", "WALNUT CREEK",
	"FALLS CHURCH", "SILVER SPG", "NEW HAVEN", "NEW BRUNSWICK", "WHITE PLAINS", "HIGH POINT", "ROCK HILL",
	"ELK GROVE", "MORENO VALLEY", "RANCHO CUCAMONGA", "HUNTINGTON BEACH", "GARDEN GROVE", "COSTA MESA",
	"FORT WAYNE", "FT WAYNE", "SANTA ROSA", "SANTA FE", "LAKE FOREST", "OVERLAND PARK", "LEES SUMMIT",
	"SAINT PAUL", "SAINT PETERSBURG", "MYRTLE BEACH", "DAYTONA BEACH", "MIAMI BEACH", "KEY WEST",
	"BOWLING GREEN", "GREEN BAY", "IOWA CITY", "CARSON CITY", "RAPID CITY", "JOHNSON CITY", "BAY CITY",
	"PANAMA CITY", "ATLANTIC CITY", "OCEAN CITY", "DODGE CITY", "ELLICOTT CITY", "LAKE CHARLES", "PUNTA GORDA")
