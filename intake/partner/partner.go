// Package partner keeps the financial institutions that deliver files: their
// API key, SFTP credentials and limits, one file per partner under a
// directory, mode 0600. Secrets are generated here (or imported) and shown
// once. The SFTP password is stored only as a hash, since it is only ever
// compared; the API key is kept as well, because it is also the HMAC secret
// that signs the partner's JWTs, and verifying HS256 needs the secret itself.
package partner

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/flatfiler/flatfiler/intake/harvest"
	"github.com/flatfiler/flatfiler/internal/durable"
)

// IDPattern is what a partner ID may look like: it names a directory and
// is the SFTP user name.
var IDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// ErrExists is returned by Add for a partner ID already taken.
var ErrExists = errors.New("partner already exists")

// ErrNotFound: no partner has the ID.
var ErrNotFound = errors.New("no such partner")

// Partner is one financial institution, as stored.
type Partner struct {
	ID     string `json:"partner_id"`
	Domain string `json:"domain,omitempty"` // the JWT audience of its PFM (reporting API)
	// APIKeySHA256 is the hex SHA-256 of the API key. Keys are 256 random
	// bits, so a fast hash is enough; it also lets a request be matched to
	// its partner without trying every one.
	APIKeySHA256 string `json:"api_key_sha256"`
	// APIKey is the key itself: the HS256 secret of the partner's JWTs.
	// Empty for partners created before the reporting API, whose JWTs are
	// refused until their key is re-imported (partner add --api-key).
	APIKey string `json:"api_key,omitempty"`
	// SFTPPasswordBcrypt is the bcrypt of the SFTP password: SFTP logins are
	// rare and the cost slows guessing further.
	SFTPPasswordBcrypt string    `json:"sftp_password_bcrypt"`
	AuthorizedKeys     []string  `json:"authorized_keys,omitempty"` // authorized_keys lines
	MaxFileSize        int64     `json:"max_file_size,omitempty"`   // bytes; 0: the server's default
	QuotaBytes         int64     `json:"quota_bytes,omitempty"`     // bytes; 0: the server's default
	CreatedAt          time.Time `json:"created_at"`
	// ProductName and Modules are what the spec's GET partners/current
	// shows of the partner's PFM product.
	ProductName string            `json:"product_name,omitempty"`
	Modules     map[string]Module `json:"modules,omitempty"`
	// Harvest is the partner's pull endpoint (the spec's Data Source
	// Setup); nil: none. Its key is a secret, as the API key is.
	Harvest *harvest.Config `json:"harvest,omitempty"`
	// ExpectIngestEvery is the longest an operator expects between two
	// files, batches or harvests of the partner applied; 0: no
	// expectation. It is exported for the "partner overdue" alert.
	ExpectIngestEvery harvest.Duration `json:"expect_ingest_every,omitempty"`
}

// Module is one of the partner's PFM modules (the spec's "mobile").
type Module struct {
	Name                     string `json:"name"`
	LogoutURL                string `json:"logout_url,omitempty"`
	BackToOnlineBankingURL   string `json:"back_to_online_banking_url,omitempty"`
	BackToOnlineBankingLabel string `json:"back_to_online_banking_label,omitempty"`
}

// Number is the partner's id as the spec's integer ids: a stable number
// from its ID, at most 2^53 so JSON clients read it exactly.
func (p *Partner) Number() int64 { return NumberOf(p.ID) }

// NumberOf is Partner.Number of the partner id.
func NumberOf(id string) int64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return max(int64(h.Sum64()&(1<<53-1)), 1)
}

// Credentials are the secrets of a new partner, shown once.
type Credentials struct {
	PartnerID    string `json:"partner_id"`
	APIKey       string `json:"api_key"`
	SFTPUser     string `json:"sftp_user"`
	SFTPPassword string `json:"sftp_password"`
}

// NewOptions describe a partner to add.
type NewOptions struct {
	Domain string
	// APIKey imports an existing key (a partner moving from another
	// platform keeps the key its JWT code signs with); empty: generate one.
	APIKey         string
	AuthorizedKeys []string // authorized_keys lines, checked here
	MaxFileSize    int64
	QuotaBytes     int64
	ProductName    string
	Modules        map[string]Module
}

// Changes are what `partner set` changes; nil fields are kept.
type Changes struct {
	Domain      *string
	ProductName *string
	Modules     map[string]Module // non-nil: replaces them
	// Harvest, if set, changes the pull endpoint's configuration (a new
	// one if the partner has none); the result must pass Config.Check.
	Harvest func(*harvest.Config)
	// ExpectIngestEvery, if set, replaces Partner.ExpectIngestEvery.
	ExpectIngestEvery *time.Duration
}

// Registry is the partners directory. It is re-read when the directory
// changes, so `flatfiler partner add` takes effect on a running server.
type Registry struct {
	dir string

	mu       sync.Mutex
	loadedAt time.Time // the directory's mtime when last read
	byID     map[string]*Partner
	byKey    map[string]*Partner
}

// Open opens (creating if needed) the registry in dir.
func Open(dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("partners: %w", err)
	}
	r := &Registry{dir: dir}
	if err := r.reload(true); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Registry) reload(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := os.Stat(r.dir)
	if err != nil {
		return fmt.Errorf("partners: %w", err)
	}
	if !force && st.ModTime().Equal(r.loadedAt) {
		return nil
	}
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return fmt.Errorf("partners: %w", err)
	}
	byID, byKey := map[string]*Partner{}, map[string]*Partner{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || e.IsDir() {
			continue
		}
		path := filepath.Join(r.dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("partners: %w", err)
		}
		p := &Partner{}
		if err := json.Unmarshal(data, p); err != nil {
			return fmt.Errorf("partners: %s: %w", path, err)
		}
		byID[p.ID] = p
		byKey[p.APIKeySHA256] = p
	}
	r.byID, r.byKey, r.loadedAt = byID, byKey, st.ModTime()
	return nil
}

// refresh re-reads the directory if it changed; an unreadable directory
// keeps the partners already known.
func (r *Registry) refresh() { _ = r.reload(false) }

// Len is the number of partners.
func (r *Registry) Len() int {
	r.refresh()
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}

// IDs lists the partners, sorted.
func (r *Registry) IDs() []string {
	r.refresh()
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.byID))
	for id := range r.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Get returns a partner by ID.
func (r *Registry) Get(id string) (*Partner, bool) {
	r.refresh()
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.byID[id]
	return p, ok
}

// ByAPIKey returns the partner an API key belongs to.
func (r *Registry) ByAPIKey(key string) (*Partner, bool) {
	if key == "" {
		return nil, false
	}
	r.refresh()
	sum := sha256.Sum256([]byte(key))
	want := hex.EncodeToString(sum[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	// Looked up by the key's hash: timing says nothing about the key.
	p, ok := r.byKey[want]
	return p, ok
}

// CheckPassword reports whether password is the partner's SFTP password.
func (p *Partner) CheckPassword(password string) bool {
	return bcrypt.CompareHashAndPassword([]byte(p.SFTPPasswordBcrypt), []byte(password)) == nil
}

// HasKey reports whether key is one of the partner's authorized keys.
func (p *Partner) HasKey(key ssh.PublicKey) bool {
	want := key.Marshal()
	for _, line := range p.AuthorizedKeys {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err == nil && subtle.ConstantTimeCompare(k.Marshal(), want) == 1 {
			return true
		}
	}
	return false
}

// Add creates a partner and returns its credentials; they are not stored
// in the clear anywhere.
func (r *Registry) Add(id string, opts NewOptions) (Credentials, error) {
	if !IDPattern.MatchString(id) {
		return Credentials{}, fmt.Errorf("partner ID %q: use 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	}
	for _, line := range opts.AuthorizedKeys {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil {
			return Credentials{}, fmt.Errorf("partner %s: SSH public key: %w", id, err)
		}
	}
	creds := Credentials{PartnerID: id, SFTPUser: id, APIKey: opts.APIKey, SFTPPassword: secret(16)}
	if creds.APIKey == "" {
		creds.APIKey = secret(32)
	} else if err := checkImportedKey(creds.APIKey); err != nil {
		return Credentials{}, fmt.Errorf("partner %s: API key: %w", id, err)
	}
	keySum := sha256.Sum256([]byte(creds.APIKey))
	pwHash, err := bcrypt.GenerateFromPassword([]byte(creds.SFTPPassword), bcrypt.DefaultCost)
	if err != nil {
		return Credentials{}, err
	}
	p := Partner{
		ID: id, Domain: opts.Domain, APIKeySHA256: hex.EncodeToString(keySum[:]), APIKey: creds.APIKey,
		SFTPPasswordBcrypt: string(pwHash), AuthorizedKeys: opts.AuthorizedKeys,
		MaxFileSize: opts.MaxFileSize, QuotaBytes: opts.QuotaBytes, CreatedAt: time.Now().UTC(),
		ProductName: opts.ProductName, Modules: opts.Modules,
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return Credentials{}, err
	}
	path := filepath.Join(r.dir, id+".json")
	// O_EXCL: two `partner add` of one ID never overwrite each other's keys.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return Credentials{}, fmt.Errorf("partner %s: %w", id, ErrExists)
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("partner %s: %w", id, err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		os.Remove(path)
		return Credentials{}, fmt.Errorf("partner %s: %w", id, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return Credentials{}, fmt.Errorf("partner %s: %w", id, err)
	}
	if err := f.Close(); err != nil {
		return Credentials{}, fmt.Errorf("partner %s: %w", id, err)
	}
	if err := r.reload(true); err != nil {
		return Credentials{}, err
	}
	return creds, nil
}

// Set changes a partner's record; a running server sees it at its next
// request. The record is replaced whole (a temporary file renamed over it),
// so a reader never sees half of it.
func (r *Registry) Set(id string, c Changes) error {
	if err := r.reload(true); err != nil {
		return err
	}
	old, ok := r.Get(id)
	if !ok {
		return fmt.Errorf("partner %s: %w", id, ErrNotFound)
	}
	p := *old
	if c.Domain != nil {
		p.Domain = *c.Domain
	}
	if c.ProductName != nil {
		p.ProductName = *c.ProductName
	}
	if c.Modules != nil {
		p.Modules = c.Modules
	}
	if c.Harvest != nil {
		h := harvest.Config{}
		if p.Harvest != nil {
			h = *p.Harvest
		}
		c.Harvest(&h)
		if err := h.Check(); err != nil {
			return fmt.Errorf("partner %s: %w", id, err)
		}
		p.Harvest = &h
	}
	if c.ExpectIngestEvery != nil {
		if *c.ExpectIngestEvery < 0 {
			return fmt.Errorf("partner %s: the expected interval between ingests is negative", id)
		}
		p.ExpectIngestEvery = harvest.Duration(*c.ExpectIngestEvery)
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	// Written beside it as ID.json.tmp, which reload does not read.
	if err := durable.WriteFile(filepath.Join(r.dir, id+".json"), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("partner %s: %w", id, err)
	}
	return r.reload(true)
}

// minImportedKey keeps imported keys guessable only with effort: the spec's
// own example key has 20 hex digits (80 bits).
const minImportedKey = 16

func checkImportedKey(key string) error {
	if len(key) < minImportedKey {
		return fmt.Errorf("at least %d characters, got %d", minImportedKey, len(key))
	}
	for _, c := range key {
		if c <= ' ' || c > '~' || c == ':' {
			return fmt.Errorf("printable ASCII without spaces or ':' (it is an HTTP Basic user name)")
		}
	}
	return nil
}

// secret returns n random bytes in hex: safe in URLs, shells and password
// prompts, and never mistaken for a command-line flag.
func secret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
