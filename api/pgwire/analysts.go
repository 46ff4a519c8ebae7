package pgwire

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/flatfiler/flatfiler/internal/durable"
)

// Analyst is a person who queries the warehouse with SQL, as stored: the
// password only as a bcrypt hash.
type Analyst struct {
	Name           string `json:"name"`
	PasswordBcrypt string `json:"password_bcrypt"`
	// Partners are those whose rows the analyst sees; nil with
	// AllPartners: every partner.
	Partners    []string  `json:"partners,omitempty"`
	AllPartners bool      `json:"all_partners,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// Scope is the partners an analyst's session sees: nil for all.
func (a *Analyst) Scope() []string {
	if a.AllPartners {
		return nil
	}
	return append([]string{}, a.Partners...)
}

// Analysts are kept one file each in a folder (DATA/analysts), read at
// each login: an analyst added is seen at once.
type Analysts struct{ dir string }

// OpenAnalysts opens (creating) the folder.
func OpenAnalysts(dir string) (*Analysts, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("analysts: %w", err)
	}
	return &Analysts{dir: dir}, nil
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// ErrExists is Add of a name taken.
var ErrExists = errors.New("analyst already exists")

// Add creates an analyst and returns its password, which is not stored.
func (as *Analysts) Add(name string, partners []string, all bool) (string, error) {
	switch {
	case !namePattern.MatchString(name):
		return "", fmt.Errorf("analyst name %q: use 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	case all == (len(partners) > 0):
		return "", errors.New("give --partners a,b or --all-partners (one of them)")
	}
	path := filepath.Join(as.dir, name+".json")
	if _, err := os.Stat(path); err == nil {
		return "", fmt.Errorf("analyst %s: %w", name, ErrExists)
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	password := hex.EncodeToString(b)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	a := Analyst{Name: name, PasswordBcrypt: string(hash), Partners: partners, AllPartners: all, CreatedAt: time.Now().UTC()}
	data, _ := json.MarshalIndent(a, "", "  ") // plain fields: it marshals
	if err := durable.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("analyst %s: %w", name, err)
	}
	return password, nil
}

// Check returns the analyst the name and password are; false for any
// mismatch (an unknown name costs a hash comparison too, so its answer
// takes as long).
func (as *Analysts) Check(name, password string) (*Analyst, bool) {
	a := &Analyst{}
	data, err := os.ReadFile(filepath.Join(as.dir, name+".json"))
	if err != nil || !namePattern.MatchString(name) || json.Unmarshal(data, a) != nil {
		_ = bcrypt.CompareHashAndPassword(decoyHash, []byte(password))
		return nil, false
	}
	if bcrypt.CompareHashAndPassword([]byte(a.PasswordBcrypt), []byte(password)) != nil {
		return nil, false
	}
	return a, true
}

var decoyHash, _ = bcrypt.GenerateFromPassword([]byte("decoy"), bcrypt.DefaultCost)
