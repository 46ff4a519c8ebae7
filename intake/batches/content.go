package batches

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sourcegraph/conc/stream"

	"github.com/flatfiler/flatfiler/intake/jobs"
	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/stages"
	"github.com/flatfiler/flatfiler/stages/money"
	"github.com/flatfiler/flatfiler/warehouse"
)

// The content of a completed batch: the spec's callback payload. Each
// user, account and transaction the batch applied comes back as sent, with
// the ids the reporting API uses (user_id, account_id, transaction_id), and
// each transaction with what enrichment made of it (original_name,
// nickname, tags). Records the batch rejected are left out; its errors say
// why.

type contentJSON struct {
	Batch StatusJSON `json:"batch"`
}

type userContent struct {
	UserID            string           `json:"user_id"`
	PartnerCustomerID string           `json:"partner_customer_id"`
	FirstName         string           `json:"first_name,omitempty"`
	LastName          string           `json:"last_name,omitempty"`
	Email             string           `json:"email,omitempty"`
	ZipCode           string           `json:"zip_code,omitempty"`
	Accounts          []accountContent `json:"accounts"`
}

type accountContent struct {
	AccountID    string               `json:"account_id"`
	ReferenceID  string               `json:"reference_id"`
	Name         string               `json:"name,omitempty"`
	AccountType  string               `json:"account_type"`
	Balances     []balanceContent     `json:"account_balances"`
	Transactions []transactionContent `json:"transactions"`
}

type balanceContent struct {
	BalanceType   string `json:"balance_type"`
	BalanceAmount string `json:"balance_amount"`
	CurrencyCode  string `json:"currency_code,omitempty"`
}

type transactionContent struct {
	TransactionID   string       `json:"transaction_id"`
	Balance         string       `json:"balance"`
	CheckNumber     string       `json:"check_number,omitempty"`
	Hide            bool         `json:"hide,omitempty"`
	Memo            string       `json:"memo,omitempty"`
	PostedAt        string       `json:"posted_at"`
	ReferenceID     string       `json:"reference_id"`
	TransactionType string       `json:"transaction_type"`
	OriginalName    string       `json:"original_name"`
	Nickname        string       `json:"nickname"`
	Tags            []tagContent `json:"tags"`
}

type tagContent struct {
	Name    string          `json:"name"`
	Balance json.RawMessage `json:"balance"`
}

// A group of users, looked up in one warehouse read while the content is
// built, ends at usersPerLookup users or transactionsPerLookup
// transactions, whichever comes first: a card issuer's 40 users with 6,000
// transactions each made one group, and one core did all the work, with
// memory following the group.
const (
	usersPerLookup        = 200
	transactionsPerLookup = 20_000
)

// buildContent writes a final batch's content file and records it, with
// the callback's first attempt due now.
func (s *Service) buildContent(ctx context.Context, j jobs.Job) error {
	dir := filepath.Join(s.cfg.Dir, j.Partner)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, j.ID+".json")
	tmp, err := os.CreateTemp(dir, j.ID+"-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	sum := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(tmp, sum), 1<<20)
	head, _ := json.Marshal(contentJSON{Batch: batchOfContent(j)})
	// {"batch": {...}, "users": [ ... ]}
	w.Write(head[:len(head)-1])
	w.WriteString(`,"users":[`)
	if j.Status != jobs.Error {
		if err := s.writeUsers(ctx, j, w); err != nil {
			tmp.Close()
			return err
		}
	}
	w.WriteString("]}\n")
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	info, _ := tmp.Stat()
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	now := time.Now().UTC()
	return s.cfg.Jobs.UpdateBatch(j.ID, func(b *jobs.BatchInfo) {
		b.Content = &jobs.BatchContent{Path: path, SHA256: hex.EncodeToString(sum.Sum(nil)), Bytes: info.Size(), At: now}
		if b.Callback == "" {
			b.Delivery = &jobs.Delivery{State: jobs.DeliveryNone}
		} else {
			b.Delivery = &jobs.Delivery{State: jobs.DeliveryPending, NextAttemptAt: &now}
		}
	})
}

// batchOfContent is the callback's batch object: the status without the
// callback's own state.
func batchOfContent(j jobs.Job) StatusJSON {
	st := Status(j)
	st.Callback = nil
	return st
}

// pendingUser is a user of the batch as sent, with what validation kept.
type pendingUser struct {
	rec  *parse.User
	kept stages.Validated
}

// writeUsers reads the batch again, in order, and writes each user it
// applied, looking their transactions up in the warehouse a group at a time.
func (s *Service) writeUsers(ctx context.Context, j jobs.Job, w *bufio.Writer) error {
	f, err := os.Open(s.cfg.Jobs.InputPath(j))
	if err != nil {
		return err
	}
	defer f.Close()
	validator := stages.Validator{Type: parse.Combined, Batch: true}
	dec := parse.NewBatchDecoder(f, parse.Options{Workers: s.cfg.Workers})
	// Groups of users are looked up and encoded in parallel, and written in
	// the batch's order: one at a time, the lookups took a 100 MB batch's
	// content 15 s on one core.
	groups := stream.New().WithMaxGoroutines(max(1, s.cfg.Workers))
	var mu sync.Mutex // guards failed, set by the groups' callbacks, read by the reader
	var failed error
	first := true
	var group []pendingUser
	groupTxns := 0
	flush := func() error {
		mu.Lock()
		err := failed
		mu.Unlock()
		if err != nil || len(group) == 0 {
			return err
		}
		g := group
		group, groupTxns = nil, 0
		groups.Go(func() stream.Callback {
			var encoded [][]byte
			users, err := s.contentOf(ctx, j.Partner, g)
			for i := 0; err == nil && i < len(users); i++ {
				var b []byte
				b, err = json.Marshal(users[i])
				encoded = append(encoded, b)
			}
			return func() {
				mu.Lock()
				defer mu.Unlock()
				if failed != nil || err != nil {
					failed = cmp.Or(failed, err)
					return
				}
				for _, b := range encoded {
					if !first {
						w.WriteByte(',')
					}
					first = false
					w.Write(b)
				}
			}
		})
		return nil
	}
	err = parse.Each(ctx, dec, func(recs []parse.Record) []pendingUser {
		out := make([]pendingUser, 0, len(recs))
		for _, r := range recs {
			out = append(out, pendingUser{rec: r.User, kept: validator.Validate([]parse.Record{r})})
		}
		return out
	}, func(us []pendingUser) error {
		for _, u := range us {
			if len(u.kept.Batch.Users) == 0 {
				continue // rejected: the errors say why
			}
			group = append(group, u)
			groupTxns += len(u.kept.Batch.Transactions)
			if len(group) >= usersPerLookup || groupTxns >= transactionsPerLookup {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	groups.Wait()
	if err != nil {
		return fmt.Errorf("batches: reading batch %s again: %w", j.ID, err)
	}
	return failed
}

// contentOf builds the users' content: the accounts and transactions
// validation kept, the ids, and the warehouse's nickname and tags.
func (s *Service) contentOf(ctx context.Context, partnerID string, group []pendingUser) ([]userContent, error) {
	done := s.cfg.Store.Reading()
	defer done()
	var accts []warehouse.Account
	for _, u := range group {
		a, err := s.cfg.Store.Accounts(ctx, partnerID, u.kept.Batch.Users[0].PartnerCustomerID)
		if err != nil {
			return nil, err
		}
		accts = append(accts, a...)
	}
	stored := map[[2]string]warehouse.Transaction{}
	if len(accts) > 0 {
		txns, err := s.cfg.Store.Enriched(ctx, partnerID, accts)
		if err != nil {
			return nil, err
		}
		for _, t := range txns {
			stored[[2]string{t.AccountID, t.ID}] = t
		}
	}
	out := make([]userContent, 0, len(group))
	for _, u := range group {
		row := u.kept.Batch.Users[0]
		uc := userContent{UserID: row.PartnerCustomerID, PartnerCustomerID: row.PartnerCustomerID,
			FirstName: row.FirstName, LastName: row.LastName, Email: row.Email, ZipCode: row.ZipCode, Accounts: []accountContent{}}
		keptAccounts := map[string]bool{}
		for _, a := range u.kept.Batch.Accounts {
			keptAccounts[a.AccountID] = true
		}
		keptTxns := map[[2]string]stages.Transaction{}
		for _, t := range u.kept.Batch.Transactions {
			keptTxns[[2]string{t.AccountID, t.TransactionID}] = t
		}
		for _, a := range u.rec.Accounts {
			id := strings.TrimSpace(a.AccountID)
			if !keptAccounts[id] {
				continue
			}
			ac := accountContent{AccountID: strconv.FormatInt(warehouse.AccountNumber(partnerID, id), 10), ReferenceID: id,
				Name: a.AccountNickname, AccountType: a.AccountType, Balances: []balanceContent{}, Transactions: []transactionContent{}}
			if ac.Name == "" {
				ac.Name = a.AccountFiName
			}
			for _, b := range a.Balances {
				ac.Balances = append(ac.Balances, balanceContent{BalanceType: b.BalanceType, BalanceAmount: b.BalanceAmount, CurrencyCode: b.CurrencyCode})
			}
			for _, t := range a.Transactions {
				key := [2]string{id, strings.TrimSpace(t.TransactionID)}
				kept, ok := keptTxns[key]
				st, inStore := stored[key]
				if !ok || !inStore {
					continue
				}
				tc := transactionContent{
					TransactionID: warehouse.TransactionUUID(partnerID, key[0], key[1]), Balance: money.Format(kept.Cents),
					CheckNumber: kept.CheckNumber, Hide: kept.Hidden, Memo: t.Memo, PostedAt: strings.TrimSpace(t.PostedDate),
					ReferenceID: key[1], TransactionType: strings.ToUpper(kept.TransactionType[:1]) + kept.TransactionType[1:],
					OriginalName: st.OriginalName, Nickname: st.Nickname, Tags: []tagContent{},
				}
				for _, tag := range st.Tags() {
					tc.Tags = append(tc.Tags, tagContent{Name: tag.Name, Balance: json.RawMessage(money.Format(tag.Cents))})
				}
				ac.Transactions = append(ac.Transactions, tc)
			}
			uc.Accounts = append(uc.Accounts, ac)
		}
		out = append(out, uc)
	}
	return out, nil
}
