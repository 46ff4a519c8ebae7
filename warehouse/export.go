package warehouse

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The export writes the warehouse as Parquet for bulk readers (a data lake,
// Spark, pandas): one folder per table, Hive-style partitions by partner and,
// for dated tables, month (transactions/partner_id=demo/month=2016-07/...),
// zstd-compressed, with a manifest. DuckDB's COPY writes the files,
// streaming: memory does not follow the tables' size.

// ExportOptions choose what is exported.
type ExportOptions struct {
	Dir     string
	Partner string    // empty: every partner
	Since   time.Time // zero: every month; else the months from Since on (dated tables)
	Tables  []string  // empty: ExportTables
}

// ExportRequest is an export as `flatfiler export` asks for it, on the
// command line or of a running server: dates as written.
type ExportRequest struct {
	Out     string   `json:"out"`
	Partner string   `json:"partner,omitempty"`
	Since   string   `json:"since,omitempty"` // YYYY-MM-DD
	Tables  []string `json:"tables,omitempty"`
}

// Options reads the request; its error names the flag.
func (r ExportRequest) Options() (ExportOptions, error) {
	opts := ExportOptions{Dir: r.Out, Partner: r.Partner, Tables: r.Tables}
	if r.Since != "" {
		d, err := time.Parse(time.DateOnly, r.Since)
		if err != nil {
			return opts, fmt.Errorf("--since %q is not a date (YYYY-MM-DD)", r.Since)
		}
		opts.Since = d
	}
	return opts, nil
}

// ExportTables are the tables an export writes, each as an analyst reads
// it: users with what the API gave them, accounts with the user's names,
// balances, and transactions enriched (enriched_transactions).
var ExportTables = []string{"users", "accounts", "balances", "transactions"}

// exportQuery is each table's rows and, if dated, the date its month is of.
// {W} qualifies the warehouse's tables (empty for the export; the
// warehouse's catalog for an analyst's views, whose names shadow them).
var exportQuery = map[string]struct{ query, date string }{
	"users": {query: `SELECT u.partner_id, u.partner_customer_id, u.first_name, u.last_name, u.email, u.zip_code,
  u.user_experience, p.login, p.birth_year, p.sex, p.custom_tags, u.source_file, u.source_line, u.updated_at
FROM {W}users u LEFT JOIN {W}user_profiles p USING (partner_id, partner_customer_id)`},
	"accounts": {query: `SELECT a.partner_id, a.partner_customer_id, a.account_id, a.account_number, a.fi_name, a.nickname,
  x.name AS user_name, a.account_type, x.display_account_type, a.account_class, a.state, a.account_experience,
  a.source_file, a.source_line, a.updated_at
FROM {W}accounts a LEFT JOIN {W}account_edits x USING (partner_id, account_id)`},
	"balances": {query: `SELECT partner_id, account_id, balance_type, amount, currency_code, as_of, updated_at FROM {W}balances`, date: "as_of"},
	// enriched_transactions, with its tables qualified.
	"transactions": {query: `SELECT t.partner_id, t.account_id, t.transaction_id, t.transaction_type, t.posted_at, t.posted_on,
  t.originated_at, t.originated_on, t.amount, t.memo, t.original_name, t.check_number,
  coalesce(x.nickname, e.nickname) AS nickname, e.tag, e.tag_reason, e.merchant_key, x.tags AS user_tags,
  coalesce(t.hidden, false) AS hidden, t.source_file, t.source_line, t.updated_at, x.edited_at
FROM {W}transactions t LEFT JOIN {W}enrichments e USING (enrichment_id)
LEFT JOIN {W}transaction_edits x USING (partner_id, account_id, transaction_id)`, date: "posted_on"},
}

// tableQuery is a table's query with the warehouse's tables qualified by
// prefix ("" or a catalog's `"name".main.`).
func tableQuery(table, prefix string) string {
	return strings.ReplaceAll(exportQuery[table].query, "{W}", prefix)
}

// Manifest describes an export folder: what each table holds, and what of
// the warehouse it was made from.
type Manifest struct {
	ExportedAt time.Time `json:"exported_at"`
	// LastIngest is the warehouse's newest applied file, batch or API write
	// when the export ran: readers know what the files include.
	LastIngest *time.Time `json:"last_ingest,omitempty"`
	Tables     []string   `json:"tables"`
	Since      string     `json:"since,omitempty"`
	// Partners are each partner's change mark when it was written: its
	// newest ingest or edit. A partner whose mark is unchanged is not
	// written again; empty while it is being rewritten.
	Partners map[string]string `json:"partners"`
	Files    []ExportFile      `json:"files"`
	// Rewritten lists what this run wrote, and why.
	Rewritten []string `json:"rewritten"`
}

// ExportFile is one Parquet file of the export.
type ExportFile struct {
	Table   string `json:"table"`
	Partner string `json:"partner_id"`
	Path    string `json:"path"` // relative to the export folder
	Rows    int64  `json:"rows"`
}

const manifestName = "manifest.json"

// Export writes the warehouse into opts.Dir, or what changed since the last
// export there: a partner is written again when it has had a file, batch
// or API write since (or edits, or tag rules), or when the options differ.
func (s *Store) Export(ctx context.Context, opts ExportOptions) (*Manifest, error) {
	if opts.Dir == "" {
		return nil, errors.New("export: no folder given")
	}
	tables := opts.Tables
	if len(tables) == 0 {
		tables = ExportTables
	}
	for _, t := range tables {
		if _, ok := exportQuery[t]; !ok {
			return nil, fmt.Errorf("export: no table %q; the tables are %s", t, strings.Join(ExportTables, ", "))
		}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	since := ""
	if !opts.Since.IsZero() {
		since = opts.Since.Format(time.DateOnly)
	}
	// One export at a time: two into one folder would mix their files.
	s.exportMu.Lock()
	defer s.exportMu.Unlock()
	conn, err := s.db().Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer conn.Close()
	marks, last, err := changeMarks(ctx, conn, opts.Partner)
	if err != nil {
		return nil, err
	}
	old, _ := readManifest(dir)
	m := &Manifest{ExportedAt: time.Now().UTC(), LastIngest: last, Tables: tables, Since: since, Partners: map[string]string{},
		Files: []ExportFile{}, Rewritten: []string{}}
	sameOptions := old != nil && slices.Equal(old.Tables, tables) && old.Since == since
	switch {
	case old == nil:
		m.Rewritten = append(m.Rewritten, "everything: no export in this folder yet")
	case !sameOptions:
		m.Rewritten = append(m.Rewritten, "everything: the tables or --since differ from the last export's")
	}
	var todo []string
	for _, p := range sortedKeys(marks) {
		prev := ""
		if sameOptions {
			prev = old.Partners[p]
		}
		switch {
		case prev == marks[p]:
			m.Partners[p] = prev
			for _, f := range old.Files {
				if f.Partner == p {
					m.Files = append(m.Files, f)
				}
			}
		case prev == "" && sameOptions:
			todo = append(todo, p)
			m.Rewritten = append(m.Rewritten, p+": not exported yet, or its last export did not finish")
		default:
			todo = append(todo, p)
			if sameOptions {
				m.Rewritten = append(m.Rewritten, p+": changed since the last export (newest write "+marks[p]+")")
			}
		}
	}
	// A partner gone from the warehouse goes from the export.
	if old != nil && opts.Partner == "" {
		for p := range old.Partners {
			if _, ok := marks[p]; !ok {
				if err := removePartner(dir, p); err != nil {
					return nil, err
				}
				m.Rewritten = append(m.Rewritten, p+": no longer in the warehouse; removed")
			}
		}
	} else if old != nil {
		for p, mark := range old.Partners {
			if p != opts.Partner {
				m.Partners[p] = mark
				for _, f := range old.Files {
					if f.Partner == p {
						m.Files = append(m.Files, f)
					}
				}
			}
		}
	}
	for _, p := range todo {
		// Marked unwritten first: a crash midway leaves it to be written again.
		m.Partners[p] = ""
		if err := writeManifest(dir, m); err != nil {
			return nil, err
		}
		if err := removePartner(dir, p); err != nil {
			return nil, err
		}
		for _, t := range tables {
			files, err := s.exportPartnerTable(ctx, conn, dir, t, p, since)
			if err != nil {
				return nil, err
			}
			m.Files = append(m.Files, files...)
		}
		m.Partners[p] = marks[p]
	}
	slices.SortFunc(m.Files, func(a, b ExportFile) int { return strings.Compare(a.Path, b.Path) })
	if err := writeManifest(dir, m); err != nil {
		return nil, err
	}
	return m, nil
}

// changeMarks is each partner's newest write: files, batches and API writes
// (ingests), the users' edits and rules, and the latest ingest of all.
func changeMarks(ctx context.Context, conn *sql.Conn, partner string) (map[string]string, *time.Time, error) {
	rows, err := conn.QueryContext(ctx, `SELECT partner_id, strftime(max(t), '%Y-%m-%dT%H:%M:%S.%fZ') FROM (
  SELECT partner_id, finished_at AS t FROM ingests
  UNION ALL SELECT partner_id, edited_at FROM transaction_edits
  UNION ALL SELECT partner_id, edited_at FROM account_edits
  UNION ALL SELECT partner_id, created_at FROM tag_rules
) WHERE partner_id IN (SELECT partner_id FROM users UNION SELECT partner_id FROM accounts)
  AND (? = '' OR partner_id = ?) GROUP BY ALL`, partner, partner)
	if err != nil {
		return nil, nil, fmt.Errorf("export: %w", err)
	}
	defer rows.Close()
	marks := map[string]string{}
	for rows.Next() {
		var p, mark string
		if err := rows.Scan(&p, &mark); err != nil {
			return nil, nil, fmt.Errorf("export: %w", err)
		}
		marks[p] = mark
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("export: %w", err)
	}
	var last sql.NullTime
	if err := conn.QueryRowContext(ctx, `SELECT max(finished_at) FROM ingests`).Scan(&last); err != nil {
		return nil, nil, fmt.Errorf("export: %w", err)
	}
	if !last.Valid {
		return marks, nil, nil
	}
	t := last.Time.UTC()
	return marks, &t, nil
}

// exportPartnerTable writes one partner's rows of a table, partitioned.
func (s *Store) exportPartnerTable(ctx context.Context, conn *sql.Conn, dir, table, partner, since string) ([]ExportFile, error) {
	q := exportQuery[table]
	sel := "SELECT * FROM (" + tableQuery(table, "") + ") WHERE partner_id = " + quote(partner)
	partitions := "partner_id"
	if q.date != "" {
		sel = "SELECT *, strftime(" + q.date + ", '%Y-%m') AS month FROM (" + tableQuery(table, "") + ") WHERE partner_id = " + quote(partner)
		if since != "" {
			sel += " AND " + q.date + " >= DATE " + quote(since)
		}
		partitions = "partner_id, month"
	}
	target := filepath.Join(dir, table)
	// A read like the API's: it does not begin during a file's COMMIT (see
	// Store.Reading), and a commit waits for it.
	defer s.Reading()()
	rows, err := conn.QueryContext(ctx, "COPY ("+sel+") TO "+quote(target)+
		" (FORMAT parquet, COMPRESSION zstd, PARTITION_BY ("+partitions+"), OVERWRITE_OR_IGNORE, FILENAME_PATTERN 'data_{i}', RETURN_FILES true)")
	if err != nil {
		return nil, fmt.Errorf("export %s of %s: %w", table, partner, err)
	}
	var paths []string
	for rows.Next() {
		var n int64
		var files []any
		if err := rows.Scan(&n, &files); err != nil {
			rows.Close()
			return nil, fmt.Errorf("export %s of %s: %w", table, partner, err)
		}
		for _, f := range files {
			paths = append(paths, fmt.Sprint(f))
		}
	}
	rows.Close()
	if len(paths) == 0 {
		return nil, nil
	}
	// Each file's rows, from its footer.
	list := make([]string, len(paths))
	for i, p := range paths {
		list[i] = quote(p)
	}
	counts, err := conn.QueryContext(ctx, "SELECT file_name, num_rows FROM parquet_file_metadata(["+strings.Join(list, ", ")+"])")
	if err != nil {
		return nil, fmt.Errorf("export %s of %s: %w", table, partner, err)
	}
	defer counts.Close()
	var out []ExportFile
	for counts.Next() {
		var f ExportFile
		var path string
		if err := counts.Scan(&path, &f.Rows); err != nil {
			return nil, fmt.Errorf("export %s of %s: %w", table, partner, err)
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return nil, err
		}
		f.Table, f.Partner, f.Path = table, partner, filepath.ToSlash(rel)
		out = append(out, f)
	}
	return out, counts.Err()
}

// removePartner deletes a partner's partitions of every table.
func removePartner(dir, partner string) error {
	for _, t := range ExportTables {
		if err := os.RemoveAll(filepath.Join(dir, t, "partner_id="+partner)); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	return nil
}

func readManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	m := &Manifest{}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, err
	}
	return m, nil
}

// writeManifest replaces the manifest whole.
func writeManifest(dir string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, manifestName+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, manifestName)); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
