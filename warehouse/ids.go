package warehouse

import (
	"hash/fnv"

	"github.com/google/uuid"
)

// The ids the partner API shows, derived from the partner's own: the
// reporting API and push batch callbacks give the same ones.

// AccountNumber is the integer id the API shows for an account (the spec's
// ids are numbers; the partner's own account id is reference_id). It is
// derived from the partner and account ids, so it is stable across files,
// restarts and builds without a stored sequence, and it stays below 2^53
// so JavaScript clients read it exactly.
func AccountNumber(partnerID, accountID string) int64 {
	h := fnv.New64a()
	h.Write([]byte(partnerID))
	h.Write([]byte{0})
	h.Write([]byte(accountID))
	n := int64(h.Sum64() & (1<<53 - 1))
	if n == 0 {
		n = 1
	}
	return n
}

// transactionNamespace scopes flatfiler's transaction UUIDs.
var transactionNamespace = uuid.MustParse("6f0c5a4e-2d0b-4c1e-9a55-0b7e1f3d2c90")

// TransactionUUID is the id the API shows for a transaction (the spec's ids
// are UUIDs; the partner's transaction id is reference_id): a name-based
// UUID of partner, account and transaction, so it never changes.
func TransactionUUID(partnerID, accountID, transactionID string) string {
	name := make([]byte, 0, len(partnerID)+len(accountID)+len(transactionID)+2)
	name = append(append(append(append(append(name, partnerID...), 0), accountID...), 0), transactionID...)
	return uuid.NewMD5(transactionNamespace, name).String()
}
