package enrich

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"slices"
	"strings"
)

// DefaultTags are the spec's tags, available to every user (GET /api/v2/tags).
var DefaultTags = []string{"Clothing", "Education", "Entertainment", "Diningout", "Groceries", "Fees", "Health",
	"Home", "Income", "Personal", "Payment", "Savings", "Transfer", "Transportation", "Travel", "Utilities"}

// IsDefaultTag reports whether tag is one of DefaultTags.
func IsDefaultTag(tag string) bool {
	for _, t := range DefaultTags {
		if t == tag {
			return true
		}
	}
	return false
}

//go:embed merchants.tsv
var merchantsTSV string

// Merchant is one entry of the merchant dictionary.
type Merchant struct {
	ID       string // stable, lower-case: the merchant key of what it matches
	Nickname string
	// DebitTag is the tag of money paid to the merchant; CreditTag of money
	// from it (a refund takes the purchase's tag; payroll is income).
	// Empty: untagged in that direction.
	DebitTag, CreditTag string
	Aliases             []string // as printed on statements; the nickname is one too
	Line                int
}

// Dictionary is a parsed merchant dictionary.
type Dictionary struct {
	Merchants []Merchant
}

// DefaultDictionary parses the dictionary shipped in merchants.tsv.
func DefaultDictionary() (*Dictionary, error) {
	return ParseDictionary(strings.NewReader(merchantsTSV), "merchants.tsv")
}

// ParseDictionary reads a merchant dictionary: tab-separated lines of
//
//	id  nickname  debit_tag  credit_tag  aliases
//
// where credit_tag "=" repeats debit_tag, "-" or empty leaves credits
// untagged, and aliases are separated by "|". The nickname is an alias
// too unless the aliases start with "!". Lines starting with # are comments.
func ParseDictionary(r io.Reader, name string) (*Dictionary, error) {
	d := &Dictionary{}
	ids := map[string]int{}
	err := eachLine(r, name, func(line int, f []string) error {
		if len(f) != 5 {
			return fmt.Errorf("want 5 tab-separated fields (id, nickname, debit_tag, credit_tag, aliases), got %d", len(f))
		}
		m := Merchant{ID: f[0], Nickname: f[1], DebitTag: f[2], CreditTag: f[3], Line: line}
		switch m.CreditTag {
		case "=":
			m.CreditTag = m.DebitTag
		case "-":
			m.CreditTag = ""
		}
		if m.DebitTag == "-" {
			m.DebitTag = ""
		}
		for _, tag := range []string{m.DebitTag, m.CreditTag} {
			if tag != "" && !IsDefaultTag(tag) {
				return fmt.Errorf("merchant %s: tag %q is not one of the default tags", m.ID, tag)
			}
		}
		if m.ID == "" || m.Nickname == "" {
			return fmt.Errorf("id and nickname are required")
		}
		if prev, dup := ids[m.ID]; dup {
			return fmt.Errorf("merchant id %s already defined at line %d", m.ID, prev)
		}
		ids[m.ID] = m.Line
		aliases := f[4]
		if rest, ok := strings.CutPrefix(aliases, "!"); ok {
			aliases = rest // the nickname is a common word (Express, Ring): not an alias
		} else {
			m.Aliases = append(m.Aliases, m.Nickname)
		}
		for _, a := range strings.Split(aliases, "|") {
			if a = strings.TrimSpace(a); a != "" {
				m.Aliases = append(m.Aliases, a)
			}
		}
		d.Merchants = append(d.Merchants, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// eachLine calls fn with the tab-separated fields of each line of r that is
// neither blank nor a # comment; errors are prefixed with name:line.
func eachLine(r io.Reader, name string, fn func(line int, fields []string) error) error {
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if err := fn(line, strings.Split(text, "\t")); err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// matcher finds the leftmost-longest alias in a memo's words. Aliases are
// keyed by their squashed form (words joined without spaces), and a memo
// is matched on the squashed form of 1..maxWords consecutive words, so
// DUNKINDONUTS, DUNKIN DONUTS and DUNKIN-DONUTS all find one alias.
//
// The keys live in a byte trie, walked as a memo's words are read: most
// words of a memo (POS, DEBIT, store numbers) leave it at their first byte.
// A map of the keys and their prefixes cost four times as much inside the
// pipeline as alone, each lookup hashing the key and missing cache.
type matcher struct {
	pending map[string]int32 // keys added, until seal builds the trie
	root    [256]int32       // first byte -> the node it leads to; 0: no key starts so
	// cells hold the trie in depth-first order, each node as a header
	// (its target, its number of edges) followed by its edges (a label,
	// the cell of the child). A key's tail is mostly a chain of single
	// children, which this order lays out one after the other: a walk
	// reads memory in sequence instead of jumping between nodes.
	cells    []uint64
	maxWords int
}

const noTarget = -1

// add inserts alias for target; an alias of two different targets is an
// error, so the dictionary stays unambiguous. seal makes the additions
// searchable.
func (m *matcher) add(e *Enricher, alias string, target int32, describe func(int32) string) error {
	key, letters := e.squash(alias)
	if len(key) == 0 {
		return fmt.Errorf("alias %q has no words", alias)
	}
	if !letters {
		return fmt.Errorf("alias %q has no letters: it would match store numbers", alias)
	}
	if m.pending == nil {
		m.pending = map[string]int32{}
	}
	if prev, ok := m.pending[string(key)]; ok && prev != target {
		return fmt.Errorf("alias %q of %s is already an alias of %s", alias, describe(target), describe(prev))
	}
	m.pending[string(key)] = target
	// A memo may split an alias's word (MC DONALDS): allow one word more.
	m.maxWords = min(max(m.maxWords, len(e.tokens)+1), 6)
	return nil
}

// seal builds the trie of the keys added.
func (m *matcher) seal() {
	type trieEdge struct {
		label byte
		next  int32
	}
	type buildNode struct {
		edges  []trieEdge
		target int32
	}
	nodes := []buildNode{{target: noTarget}}
	for key, target := range m.pending {
		at := int32(0)
		for _, c := range []byte(key) {
			next := int32(0)
			for _, e := range nodes[at].edges {
				if e.label == c {
					next = e.next
					break
				}
			}
			if next == 0 {
				next = int32(len(nodes))
				nodes = append(nodes, buildNode{target: noTarget})
				nodes[at].edges = append(nodes[at].edges, trieEdge{label: c, next: next})
			}
			at = next
		}
		nodes[at].target = target
	}
	m.cells = m.cells[:0]
	var emit func(i int32) int32
	emit = func(i int32) int32 {
		n := nodes[i]
		// Sorted edges: the layout, and so every search, is the same
		// whatever order the map gave the keys in.
		slices.SortFunc(n.edges, func(a, b trieEdge) int { return int(a.label) - int(b.label) })
		at := int32(len(m.cells))
		m.cells = append(m.cells, uint64(uint32(n.target))|uint64(len(n.edges))<<32)
		m.cells = append(m.cells, make([]uint64, len(n.edges))...)
		for k, e := range n.edges {
			child := emit(e.next)
			m.cells[int(at)+1+k] = uint64(e.label) | uint64(child)<<32
		}
		return at
	}
	emit(0)
	m.root = [256]int32{}
	for k := range nodes[0].edges {
		e := m.cells[1+k]
		m.root[byte(e)] = int32(e >> 32)
	}
	m.pending = nil
}

// step follows the edge labelled c from node; 0 if there is none.
func (m *matcher) step(node int32, c byte) int32 {
	if node == 0 {
		return m.root[c]
	}
	n := int(m.cells[node] >> 32)
	for _, e := range m.cells[node+1 : int(node)+1+n] {
		if byte(e) == c {
			return int32(e >> 32)
		}
	}
	return 0
}

// target returns the alias ending at node, or noTarget.
func (m *matcher) target(node int32) int32 { return int32(uint32(m.cells[node])) }

// squash returns an alias's matching key, its words joined in matching
// form, and whether it has letters. The key is e's scratch: copy to keep.
func (e *Enricher) squash(alias string) (key []byte, letters bool) {
	e.tokenize(alias)
	key = e.scratch[:0]
	for i := range e.tokens {
		letters = letters || e.tokens[i].flags&hasLetter != 0
		key = appendKey(key, e.word(i))
	}
	e.scratch = key
	return key, letters
}

// find returns the target of the leftmost-longest alias among words
// [from, to), and the words it spans.
func (e *Enricher) find(m *matcher, from, to int) (target int32, at, end int, ok bool) {
	if len(m.cells) <= 1 {
		return 0, 0, 0, false
	}
	for i := from; i < to; i++ {
		if e.tokens[i].flags&domain != 0 {
			continue
		}
		node, found := int32(0), false
	words:
		for k := i; k < min(to, i+m.maxWords); k++ {
			for _, c := range e.word(k) {
				if c == '\'' {
					continue // apostrophes are not part of keys (see appendKey)
				}
				if node = m.step(node, c); node == 0 {
					break words // no alias starts so: longer cannot match either
				}
			}
			if t := m.target(node); t != noTarget {
				target, end, found = t, k+1, true
			}
		}
		if found {
			return target, i, end, true
		}
	}
	return 0, 0, 0, false
}
