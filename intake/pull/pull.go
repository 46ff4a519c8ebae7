// Package pull runs pull harvests, the spec's third data source ("Data
// Source Setup"): it asks a partner's endpoint for a user's details,
// accounts and each account's newer transactions (intake/harvest's signed
// documents) and applies the answers through the pipeline in one commit,
// as a file is applied.
package pull

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/flatfiler/flatfiler/intake/harvest"
	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/stages"
	"github.com/flatfiler/flatfiler/warehouse"
)

// The spec's windows: a user without stored transactions gets exactly the
// last 90 days; nothing older than 180 days is created, changed or
// deleted by a harvest.
const (
	NewUserDays = 90
	ProtectDays = 180
)

// Harvester harvests users of partners with a pull endpoint.
type Harvester struct {
	Pipeline *pipeline.Pipeline
	Store    *warehouse.Store
	// AllowPrivate lets endpoints be on loopback and private addresses
	// (serve --harvest-allow-private: tests and demos).
	AllowPrivate bool
	Logger       *slog.Logger
	// Now is the clock of the windows and request ids; nil: time.Now.
	Now func() time.Time
	// Metrics, nil: unregistered ones.
	Metrics *Metrics

	once      sync.Once
	client    *http.Client
	ids       *requestIDs
	mu        sync.Mutex
	endpoints map[string]*endpoint // by partner, rebuilt when its config changes
}

// Outcome is what one harvest of a user did.
type Outcome struct {
	// Report is the pipeline's, of the answers composed into one combined
	// document (nil if nothing was applied).
	Report *pipeline.Report
	// Requests counts the requests the endpoint answered.
	Requests int
	// Closed lists the accounts the answer left out, marked closed.
	Closed []string
}

func (h *Harvester) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *Harvester) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// setup makes what the Harvester shares between runs, once.
func (h *Harvester) setup() {
	h.once.Do(func() {
		h.client = newClient(h.AllowPrivate)
		h.ids = &requestIDs{now: h.now}
		h.endpoints = map[string]*endpoint{}
		if h.Metrics == nil {
			h.Metrics = NewMetrics(nil)
		}
	})
}

func (h *Harvester) endpoint(partnerID string, cfg harvest.Config) (*endpoint, error) {
	key, err := harvest.ParseKey(cfg.Key)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if e, ok := h.endpoints[partnerID]; ok && e.cfg.URL == cfg.URL && e.cfg.Key == cfg.Key && e.cfg.Slots() == cfg.Slots() {
		e.cfg = cfg
		return e, nil
	}
	e := &endpoint{partner: partnerID, cfg: cfg, key: key, client: h.client, ids: h.ids,
		slots: make(chan struct{}, cfg.Slots()), metrics: h.Metrics}
	h.endpoints[partnerID] = e
	return e, nil
}

// ErrNoEndpoint is a partner without a pull endpoint.
var ErrNoEndpoint = errors.New("the partner has no harvest endpoint (flatfiler partner set --harvest-url --harvest-key)")

// HarvestUser asks the partner's endpoint for the user, the user's
// accounts and each account's transactions (after the newest stored one),
// and applies the answers in one commit. The spec's rules hold: accounts
// stored for the user that the answer leaves out are marked closed; a user
// without stored transactions keeps the last 90 days; an account with
// stored transactions keeps every one from the day of its newest, however
// old; nothing posted more than 180 days ago is created, changed or
// deleted. Nothing is applied if any request fails.
// jobID is stored with the commit's ingest row (see Runs).
func (h *Harvester) HarvestUser(ctx context.Context, partnerID string, cfg *harvest.Config, user, jobID string) (*Outcome, error) {
	h.setup()
	if cfg == nil {
		return nil, ErrNoEndpoint
	}
	e, err := h.endpoint(partnerID, *cfg)
	if err != nil {
		return nil, err
	}
	stored, err := h.Store.Accounts(ctx, partnerID, user)
	if err != nil {
		return nil, err
	}
	latest, err := h.Store.LatestTransactions(ctx, stored)
	if err != nil {
		return nil, err
	}
	out := &Outcome{}
	users, err := e.ask(ctx, "user "+user, harvest.UserList(user))
	if err != nil {
		return nil, err
	}
	accounts, err := e.ask(ctx, "accounts of user "+user, harvest.AccountList(user))
	if err != nil {
		return nil, err
	}
	out.Requests = 2
	who, err := userOf(ctx, user, users)
	if err != nil {
		return nil, &RequestError{Partner: partnerID, What: "user " + user, Err: err}
	}
	answered, err := accountsOf(ctx, accounts)
	if err != nil {
		return nil, &RequestError{Partner: partnerID, What: "accounts of user " + user, Err: err}
	}
	// Each kept account's transactions, several at once within the
	// endpoint's slots; any failure fails the harvest, before anything is
	// applied.
	p := pool.New().WithContext(ctx).WithCancelOnError().WithFirstError()
	for i := range answered {
		a := &answered[i]
		if !a.ask {
			continue
		}
		p.Go(func(ctx context.Context) error {
			what := fmt.Sprintf("transactions of account %s of user %s", a.id, user)
			body, err := e.ask(ctx, what, harvest.TransactionList(a.id, latest[a.id].TransactionID))
			if err != nil {
				return err
			}
			recs, _, err := parse.Collect(ctx, bytes.NewReader(body), parse.Options{Type: parse.Transactions})
			if err != nil {
				return &RequestError{Partner: partnerID, What: what, Err: err}
			}
			for _, r := range recs {
				if r.Transaction != nil {
					a.record.Transactions = append(a.record.Transactions, *r.Transaction)
				}
			}
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return nil, err
	}
	var kept []string
	for _, a := range answered {
		who.Accounts = append(who.Accounts, a.record)
		if !a.deleted {
			kept = append(kept, a.id)
		}
		if a.ask {
			out.Requests++
		}
	}

	today := h.now().UTC().Truncate(24 * time.Hour)
	protect := today.AddDate(0, 0, -ProtectDays)
	newUser := today.AddDate(0, 0, -NewUserDays)
	from := func(account string) time.Time {
		l, ok := latest[account]
		if !ok || len(latest) == 0 {
			return newUser
		}
		return maxTime(l.PostedOn, protect)
	}
	for _, a := range stored {
		if a.State != "closed" && !slices.Contains(kept, a.ID) {
			out.Closed = append(out.Closed, a.ID)
		}
	}
	// The three answers as one combined document: the user, its accounts
	// nested, their transactions nested, so the file's rules (parents,
	// actions) hold within it, and it applies whole or not at all.
	var doc bytes.Buffer
	enc := parse.NewEncoder(&doc)
	enc.Open("Users")
	enc.User(who)
	if err := enc.Close(); err != nil {
		return nil, err
	}
	out.Report, err = h.Pipeline.Ingest(ctx, "harvest-"+user+".xml", &doc, pipeline.Options{
		Partner: partnerID, Logger: h.Logger, AsOf: today, JobID: jobID,
		PostedFrom: from, CloseAccounts: out.Closed, ProtectBefore: protect,
	})
	if err != nil {
		return out, err
	}
	return out, nil
}

// userOf finds the user in a users answer.
func userOf(ctx context.Context, user string, answer []byte) (*parse.User, error) {
	recs, _, err := parse.Collect(ctx, bytes.NewReader(answer), parse.Options{Type: parse.Users})
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if u := r.User; u != nil && strings.TrimSpace(u.PartnerCustomerID) == user {
			u.Accounts = nil // asked apart
			return u, nil
		}
	}
	return nil, fmt.Errorf("the answer has no user %s", user)
}

// answeredAccount is one account of an accounts answer.
type answeredAccount struct {
	id      string
	deleted bool // its Action is Delete
	ask     bool // its transactions are asked for: it is kept and valid
	record  parse.Account
}

// accountsOf lists the accounts of an accounts answer, in its order, with
// what the validator makes of their ids and actions (the files' rules:
// trimmed ids, a missing Action an update); one it rejects is kept for
// the load to reject, and is not asked about.
func accountsOf(ctx context.Context, answer []byte) ([]answeredAccount, error) {
	recs, _, err := parse.Collect(ctx, bytes.NewReader(answer), parse.Options{Type: parse.Accounts})
	if err != nil {
		return nil, err
	}
	var out []answeredAccount
	for _, r := range recs {
		if r.Account == nil {
			continue
		}
		a := answeredAccount{record: *r.Account}
		a.record.Transactions = nil // asked apart
		v := (stages.Validator{Type: parse.Accounts}).Validate([]parse.Record{{Account: &a.record}})
		if len(v.Batch.Accounts) == 1 {
			a.id, a.deleted = v.Batch.Accounts[0].AccountID, v.Batch.Accounts[0].Action == stages.Delete
			a.ask = !a.deleted
		} else {
			// Rejected, as the load will reject it: still listed (not
			// closed), but not asked about.
			a.id = strings.TrimSpace(a.record.AccountID)
		}
		out = append(out, a)
	}
	return out, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
