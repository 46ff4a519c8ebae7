package warehouse

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/flatfiler/flatfiler/stages/enrich"
)

// Users' tagging rules live in tag_rules and are applied set-based: at
// commit to the file's transactions (once the file's actions are resolved
// and each account's owner is known), and to stored transactions when a
// rule for any date is added. Both use rankUserRules, so a transaction gets
// the same rule whichever way it comes. The order is enrich's: a rule on
// this account beats one on all accounts, then the newer rule wins.
const rankUserRules = `
SELECT t.{KEY}, r.rule_id, r.nickname, r.tag, 'user-rule:' || r.rule_id AS reason, r.match_key AS merchant_key
FROM {TXNS} t
JOIN {OWNERS} o ON o.account_id = t.account_id
JOIN tag_rules r ON r.partner_id = {P} AND r.partner_customer_id = o.partner_customer_id
  AND r.match_key = t.merchant_key
  AND (r.account_id IS NULL OR r.account_id = t.account_id)
  AND (r.posted_from IS NULL OR t.posted_on >= r.posted_from)
QUALIFY row_number() OVER (PARTITION BY t.{KEY}
  ORDER BY r.account_id IS NULL, r.created_at DESC, r.rule_id DESC) = 1`

// findUserRules notes whether the partner's users have rules, so Commit
// applies them only then.
func (l *Load) findUserRules(ctx context.Context) error {
	err := l.conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM tag_rules WHERE partner_id = ?)", l.opts.Partner).Scan(&l.userRules)
	if err != nil {
		return fmt.Errorf("warehouse: tag rules: %w", err)
	}
	return nil
}

// rankUserRulesStmt picks, for each of the file's staged transactions, the
// user rule that wins it, once resolution has settled each account's
// owner: an account the file (re)assigns belongs to the owner it names.
func (l *Load) rankUserRulesStmt() string {
	owners := "(SELECT account_id, partner_customer_id FROM accounts WHERE partner_id = {P})"
	if l.users || l.accounts {
		owners = `(SELECT account_id, partner_customer_id FROM {S}.last_accounts
  UNION ALL SELECT account_id, partner_customer_id FROM accounts
  WHERE partner_id = {P} AND account_id NOT IN (SELECT account_id FROM {S}.last_accounts))`
	}
	txns := `(SELECT t.seq, t.account_id, e.merchant_key, t.posted_on
  FROM {S}.transactions t JOIN {S}.enrichments e ON e.id = t.enrichment_id)`
	ranked := strings.NewReplacer("{TXNS}", txns, "{OWNERS}", owners, "{KEY}", "seq").Replace(rankUserRules)
	// Each winning rule is one decision of the load, numbered below the
	// staged results' ids (see mapDecisions).
	return "CREATE OR REPLACE TABLE {S}.user_tagged AS SELECT *, -dense_rank() OVER (ORDER BY rule_id) AS local_id FROM (" + ranked + ")"
}

// AddUserRule stores a user's rule. With retag (the spec's posted_at
// any_date), the user's stored transactions it matches are re-tagged in the
// same transaction, unless a rule that outranks it applies to them; it
// returns how many were.
func (s *Store) AddUserRule(ctx context.Context, r enrich.UserRule, retag bool) (int64, error) {
	if err := r.Check(); err != nil {
		return 0, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db().BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("warehouse: add rule: %w", err)
	}
	defer tx.Rollback()
	var account, postedFrom any
	if r.Account != "" {
		account = r.Account
	}
	if !r.PostedFrom.IsZero() {
		postedFrom = r.PostedFrom.Format(time.DateOnly)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO tag_rules (partner_id, rule_id, partner_customer_id, account_id,
		match_key, nickname, tag, posted_from, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Partner, r.ID, r.User, account, r.MatchKey, r.Nickname, r.Tag, postedFrom, r.CreatedAt.UTC()); err != nil {
		return 0, fmt.Errorf("warehouse: add rule %s: %w", r.ID, err)
	}
	var n int64
	if retag {
		// Only the user's transactions with this merchant key can change, and
		// only those this rule now wins: others keep the rule that outranks it.
		txns := fmt.Sprintf(`(SELECT t.rowid AS rid, t.account_id, e.merchant_key, t.posted_on
  FROM transactions t JOIN enrichments e USING (enrichment_id)
  WHERE t.partner_id = %[1]s AND e.merchant_key = %[2]s AND t.account_id IN (
    SELECT account_id FROM accounts WHERE partner_id = %[1]s AND partner_customer_id = %[3]s))`,
			quote(r.Partner), quote(r.MatchKey), quote(r.User))
		owners := fmt.Sprintf("(SELECT account_id, partner_customer_id FROM accounts WHERE partner_id = %s)", quote(r.Partner))
		ranked := strings.NewReplacer("{TXNS}", txns, "{OWNERS}", owners, "{KEY}", "rid", "{P}", quote(r.Partner)).Replace(rankUserRules)
		// The rule's decision: its own row in enrichments, as a load makes one.
		reason := "user-rule:" + r.ID
		var id int64
		err := tx.QueryRowContext(ctx, `INSERT INTO enrichments
SELECT (SELECT coalesce(max(enrichment_id), 0) + 1 FROM enrichments), ?, ?, ?, ?
RETURNING enrichment_id`, r.Nickname, r.Tag, reason, r.MatchKey).Scan(&id)
		if err != nil {
			return 0, fmt.Errorf("warehouse: enrichment for rule %s: %w", r.ID, err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE transactions SET enrichment_id = ?
FROM (`+ranked+`) r WHERE transactions.rowid = r.rid AND r.reason = ?`, id, reason)
		if err != nil {
			return 0, fmt.Errorf("warehouse: re-tag for rule %s: %w", r.ID, err)
		}
		n, _ = res.RowsAffected()
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("warehouse: add rule %s: %w", r.ID, err)
	}
	return n, nil
}

// UserRules returns every stored user rule, to build the enrichment snapshot.
func (s *Store) UserRules(ctx context.Context) ([]enrich.UserRule, error) {
	rows, err := s.db().QueryContext(ctx, `SELECT partner_id, rule_id, partner_customer_id, coalesce(account_id, ''),
		match_key, nickname, tag, posted_from, created_at FROM tag_rules ORDER BY rule_id`)
	if err != nil {
		return nil, fmt.Errorf("warehouse: user rules: %w", err)
	}
	defer rows.Close()
	var out []enrich.UserRule
	for rows.Next() {
		var r enrich.UserRule
		var from sql.NullTime
		if err := rows.Scan(&r.Partner, &r.ID, &r.User, &r.Account, &r.MatchKey, &r.Nickname, &r.Tag, &from, &r.CreatedAt); err != nil {
			return nil, fmt.Errorf("warehouse: user rules: %w", err)
		}
		if from.Valid {
			r.PostedFrom = from.Time
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
