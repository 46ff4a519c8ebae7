package stages

// Resolved is a batch reduced to its effect: what applying its rows one by
// one in file order would do, as far as the batch itself can tell. What needs
// the stored state (the owner of an account the batch does not mention, the
// stored children of a deleted user) is left to the warehouse, which gets the
// sequence numbers to decide it the same way.
//
// Upserts are indexes into Batch, to spare copying rows.
type Resolved struct {
	Batch              *Batch
	Users              []int       // upserts: the last event of their key
	UserDeletes        []KeyDelete // the last Delete of each user: cascades to everything stored before it
	Accounts           []int       // upserts surviving later deletes in the batch
	AccountDeletes     []KeyDelete // the last Delete of each account
	Transactions       []int       // upserts surviving later deletes in the batch
	TransactionDeletes []TransactionDelete
	// OwnerKnown[i] reports whether the batch itself names the account of
	// Transactions[i]; when it does not, a user Delete in the batch must be
	// checked against the stored owner.
	OwnerKnown []bool
}

// KeyDelete is the last Delete of a key in a batch.
type KeyDelete struct {
	Key string
	Seq Seq
}

// TransactionKey identifies a transaction within a partner.
type TransactionKey struct {
	AccountID     string
	TransactionID string
}

// TransactionDelete is the last event of a transaction in a batch, a Delete.
type TransactionDelete struct {
	TransactionKey
	Seq Seq
}

// Resolve applies the action rules to one batch: the last occurrence of a key
// wins, whatever the parallelism that produced the batch (rows carry Seq), and
// a Delete removes its record and everything under it that came before it.
func Resolve(b *Batch) *Resolved {
	r := &Resolved{Batch: b}
	lastUser, userDel := lastEvents(b.Users, func(u *User) (string, Seq, Action) { return u.PartnerCustomerID, u.Seq, u.Action })
	// Output follows file order, so that loads are reproducible.
	for i, u := range b.Users {
		if lastUser[u.PartnerCustomerID] == i {
			if u.Action == Upsert {
				r.Users = append(r.Users, i)
			} else {
				r.UserDeletes = append(r.UserDeletes, KeyDelete{u.PartnerCustomerID, userDel[u.PartnerCustomerID]})
			}
		} else if u.Action == Delete && userDel[u.PartnerCustomerID] == u.Seq {
			// Superseded by a later upsert, but its cascade still happened.
			r.UserDeletes = append(r.UserDeletes, KeyDelete{u.PartnerCustomerID, u.Seq})
		}
	}

	lastAccount, accountDel := lastEvents(b.Accounts, func(a *Account) (string, Seq, Action) { return a.AccountID, a.Seq, a.Action })
	owner := make(map[string]string, len(lastAccount))
	for i, a := range b.Accounts {
		if a.Action == Delete && accountDel[a.AccountID] == a.Seq {
			r.AccountDeletes = append(r.AccountDeletes, KeyDelete{a.AccountID, a.Seq})
		}
		if lastAccount[a.AccountID] != i || a.Action == Delete {
			continue
		}
		owner[a.AccountID] = a.PartnerCustomerID
		if d, deleted := userDel[a.PartnerCustomerID]; deleted && d > a.Seq {
			continue
		}
		r.Accounts = append(r.Accounts, i)
	}

	lastTxn, _ := lastEvents(b.Transactions, func(t *Transaction) (TransactionKey, Seq, Action) {
		return TransactionKey{t.AccountID, t.TransactionID}, t.Seq, t.Action
	})
	// Keep file order: it is the order analysts will find the rows in.
	for i := range b.Transactions {
		t := &b.Transactions[i]
		k := TransactionKey{t.AccountID, t.TransactionID}
		if lastTxn[k] != i {
			continue
		}
		if t.Action == Delete {
			r.TransactionDeletes = append(r.TransactionDeletes, TransactionDelete{k, t.Seq})
			continue
		}
		if d, ok := accountDel[t.AccountID]; ok && d > t.Seq {
			continue
		}
		pcid, known := owner[t.AccountID]
		if _, mentioned := lastAccount[t.AccountID]; mentioned {
			known = true
		}
		if d, ok := userDel[pcid]; ok && known && d > t.Seq {
			continue
		}
		r.Transactions = append(r.Transactions, i)
		r.OwnerKnown = append(r.OwnerKnown, known)
	}
	return r
}

// lastEvents finds, for each key of rows, the index of its last event and the
// seq of its last Delete.
func lastEvents[R any, K comparable](rows []R, event func(*R) (K, Seq, Action)) (last map[K]int, lastDelete map[K]Seq) {
	last = make(map[K]int, len(rows))
	lastDelete = map[K]Seq{}
	for i := range rows {
		k, seq, action := event(&rows[i])
		if action == Delete {
			lastDelete[k] = max(lastDelete[k], seq)
		}
		j, seen := last[k]
		if !seen {
			last[k] = i
		} else if _, prev, _ := event(&rows[j]); prev < seq {
			last[k] = i
		}
	}
	return last, lastDelete
}

// HasDeletes reports whether the batch deletes users or accounts, whose
// cascades need the stored state.
func (r *Resolved) HasDeletes() bool { return len(r.UserDeletes) > 0 || len(r.AccountDeletes) > 0 }
