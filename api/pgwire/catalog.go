package pgwire

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5/pgtype"
	wire "github.com/jeroenrinzema/psql-wire"

	"github.com/flatfiler/flatfiler/warehouse"
)

// psql's describe commands (\l, \dt, \d NAME) query Postgres's own catalog
// with functions DuckDB lacks (pg_get_userbyid, format_type, OPERATOR(~)).
// They are recognized here and answered from the analyst's tables, as a
// Postgres holding them as plain tables of the schema public would answer;
// a catalog query of theirs not recognized gets no rows.

// firstOID numbers the analyst's tables for \d, as Postgres numbers user
// tables from 16384.
const firstOID = 16384

var (
	listDatabases = regexp.MustCompile(`(?is)from\s+pg_catalog\.pg_database\s+d\b`)
	listRelations = regexp.MustCompile(`(?is)as\s+"schema".*as\s+"name".*as\s+"type".*from\s+pg_catalog\.pg_class\s+c\b`)
	findRelation  = regexp.MustCompile(`(?is)^select\s+c\.oid,\s*n\.nspname,\s*c\.relname\s+from\s+pg_catalog\.pg_class.*operator\(pg_catalog\.~\)\s+'\^\((.*?)\)\$'`)
	relationInfo  = regexp.MustCompile(`(?is)^select\s+c\.relchecks,.*where\s+c\.oid\s*=\s*'(\d+)'`)
	relationAttrs = regexp.MustCompile(`(?is)^select\s+a\.attname,.*from\s+pg_catalog\.pg_attribute\s+a.*a\.attrelid\s*=\s*'(\d+)'`)
	catalogQuery  = regexp.MustCompile(`(?i)pg_catalog\.`)
)

// answer is a canned result.
type answer struct {
	columns []string
	rows    [][]any
}

func (a answer) statement() wire.PreparedStatements {
	cols := make(wire.Columns, len(a.columns))
	for i, c := range a.columns {
		cols[i] = wire.Column{Name: c, Oid: pgtype.TextOID, Width: -1, TypeModifier: -1}
	}
	return wire.Prepared(wire.NewStatement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
		for _, r := range a.rows {
			if err := w.Row(r); err != nil {
				return err
			}
		}
		return w.Complete(fmt.Sprintf("SELECT %d", len(a.rows)))
	}, wire.WithColumns(cols)))
}

// describe answers psql's describe queries; ok is false for any other.
func describe(ctx context.Context, sess *warehouse.AnalystSession, q string) (answer, bool, error) {
	switch {
	case listDatabases.MatchString(q):
		return answer{
			columns: []string{"Name", "Owner", "Encoding", "Collate", "Ctype", "ICU Locale", "Locale Provider", "Access privileges"},
			rows:    [][]any{{Database, "flatfiler", "UTF8", "C", "C", nil, "libc", nil}},
		}, true, nil
	case listRelations.MatchString(q):
		a := answer{columns: []string{"Schema", "Name", "Type", "Owner"}}
		for _, t := range warehouse.AnalystTables {
			a.rows = append(a.rows, []any{"public", t, "table", "flatfiler"})
		}
		return a, true, nil
	}
	if m := findRelation.FindStringSubmatch(q); m != nil {
		a := answer{columns: []string{"oid", "nspname", "relname"}}
		re, err := regexp.Compile("^(" + m[1] + ")$")
		if err == nil {
			for i, t := range warehouse.AnalystTables {
				if re.MatchString(t) {
					a.rows = append(a.rows, []any{fmt.Sprint(firstOID + i), "public", t})
				}
			}
		}
		return a, true, nil
	}
	if m := relationInfo.FindStringSubmatch(q); m != nil {
		if _, ok := tableOf(m[1]); !ok {
			return answer{columns: []string{"relchecks"}}, true, nil
		}
		// A plain table without checks, indexes, rules, triggers or
		// policies: psql asks nothing more of it than its columns.
		return answer{
			columns: []string{"relchecks", "relkind", "relhasindex", "relhasrules", "relhastriggers", "relrowsecurity",
				"relforcerowsecurity", "relhasoids", "relispartition", "reloptions", "reltablespace", "reloftype",
				"relpersistence", "relreplident", "amname"},
			rows: [][]any{{"0", "r", "f", "f", "f", "f", "f", "f", "f", "", "0", "", "p", "d", "heap"}},
		}, true, nil
	}
	if m := relationAttrs.FindStringSubmatch(q); m != nil {
		a := answer{columns: []string{"attname", "format_type", "default", "attnotnull", "attcollation", "attidentity", "attgenerated"}}
		t, ok := tableOf(m[1])
		if !ok {
			return a, true, nil
		}
		st, err := sess.Prepare(ctx, "SELECT * FROM "+t)
		if err != nil {
			return answer{}, true, err
		}
		for _, c := range st.Columns {
			a.rows = append(a.rows, []any{c.Name, typeText(c), nil, "f", nil, "", ""})
		}
		return a, true, nil
	}
	return answer{}, false, nil
}

func tableOf(oid string) (string, bool) {
	var n int
	if _, err := fmt.Sscan(oid, &n); err != nil || n < firstOID || n >= firstOID+len(warehouse.AnalystTables) {
		return "", false
	}
	return warehouse.AnalystTables[n-firstOID], true
}

// typeText is a column's type as Postgres's format_type writes it.
func typeText(c warehouse.Column) string {
	if c.Kind == warehouse.Numeric && c.Precision > 0 {
		return fmt.Sprintf("numeric(%d,%d)", c.Precision, c.Scale)
	}
	return pgTypeOf(oidOf(c.Kind)).format
}

// unanswered reports whether a catalog query DuckDB cannot run gets an
// empty answer: psql's footers of \d (policies, statistics, publications,
// inheritance) need only to find no rows. Nothing of it ran: a refusal
// stays one.
func unanswered(q string, err error) bool {
	return err != nil && catalogQuery.MatchString(q) && !errors.Is(err, warehouse.ErrRefused)
}
