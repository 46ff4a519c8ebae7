package warehouse

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/duckdb/duckdb-go/v2"
)

// Analysts query the warehouse with SQL of their own (the SQL endpoint).
// They are people, not partners, and may be limited to some partners. An
// analyst's session is a connection of its own on which the tables an
// analyst reads (AnalystTables: the export's, as an analyst reads them)
// are temporary views of the same names, scoped to the analyst's
// partners, shadowing the warehouse's. Every statement is parsed by DuckDB
// first (json_serialize_sql) and its whole tree checked against an allow
// list: one SELECT (EXPLAIN of one), reading only those views, its own
// CTEs, pg_catalog and information_schema, and no table function but a
// few generators. Nothing else runs: no write, no ATTACH, COPY, INSTALL
// or PRAGMA, no file or network read (read_csv, 'file.csv', glob), no
// reference to the warehouse's own tables.

// AnalystTables are the views an analyst's SQL reads.
var AnalystTables = ExportTables

// allowedTableFunctions make rows from nothing.
var allowedTableFunctions = []string{"range", "generate_series", "unnest"}

// deniedFunctions reach outside the warehouse from a scalar call (the
// server's environment holds secrets).
var deniedFunctions = []string{"getenv", "read_text", "read_blob"}

// ErrRefused is a statement an analyst may not run; its message says why.
var ErrRefused = errors.New("refused")

// AnalystSession is one analyst's connection.
type AnalystSession struct {
	conn *sql.Conn
	// named are the statements the analyst prepared by name (PREPARE):
	// their bodies.
	named     map[string]string
	spool     string   // see ResultSpool
	catalog   *Catalog // see UseCatalog
	maxResult int64    // see LimitResults
}

// AnalystSession opens a session that sees the partners given (nil: all).
func (s *Store) AnalystSession(ctx context.Context, partners []string) (*AnalystSession, error) {
	if err := os.MkdirAll(s.ResultSpool(), 0o700); err != nil {
		return nil, fmt.Errorf("warehouse: analyst session: %w", err)
	}
	conn, err := s.db().Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("warehouse: analyst session: %w", err)
	}
	var catalog string
	if err := conn.QueryRowContext(ctx, "SELECT current_database()").Scan(&catalog); err != nil {
		conn.Close()
		return nil, fmt.Errorf("warehouse: analyst session: %w", err)
	}
	prefix := ident(catalog) + ".main."
	scope := ""
	if partners != nil {
		list := []string{"NULL"} // no partner: no row
		for _, p := range partners {
			list = append(list, quote(p))
		}
		scope = " WHERE partner_id IN (" + strings.Join(list, ", ") + ")"
	}
	for _, t := range AnalystTables {
		if _, err := conn.ExecContext(ctx, "CREATE OR REPLACE TEMP VIEW "+t+" AS SELECT * FROM ("+tableQuery(t, prefix)+")"+scope); err != nil {
			conn.Close()
			return nil, fmt.Errorf("warehouse: analyst session: %w", err)
		}
	}
	return &AnalystSession{conn: conn, named: map[string]string{}, spool: s.ResultSpool()}, nil
}

// Close ends the session; its views go with its connection, which is
// closed, not pooled.
func (a *AnalystSession) Close() error {
	// database/sql would give the connection back to the pool the API
	// reads from, with the session's views on it shadowing the tables:
	// ErrBadConn from Raw makes it close the connection instead.
	err := a.conn.Raw(func(any) error { return driver.ErrBadConn })
	if errors.Is(err, driver.ErrBadConn) {
		return nil
	}
	return errors.Join(err, a.conn.Close())
}

// Column is a result column.
type Column struct {
	Name      string
	Kind      Kind
	Precision int // of a Decimal
	Scale     int // of a Decimal
	duck      duckdb.Type
}

// Kind is a column's or parameter's type as the SQL endpoint maps it.
type Kind string

// The kinds: each a DuckDB type a client understands; Text is anything
// else (lists, structs, maps, enums, JSON), as JSON text.
const (
	Bool        Kind = "bool"
	Int16       Kind = "int2"
	Int32       Kind = "int4"
	Int64       Kind = "int8"
	Float32     Kind = "float4"
	Float64     Kind = "float8"
	Numeric     Kind = "numeric" // DECIMAL, HUGEINT, UBIGINT
	Text        Kind = "text"
	Date        Kind = "date"
	Timestamp   Kind = "timestamp"
	TimestampTZ Kind = "timestamptz"
	Time        Kind = "time"
	Interval    Kind = "interval"
	UUID        Kind = "uuid"
	Bytes       Kind = "bytea"
)

func kindOf(t duckdb.Type) Kind {
	switch t {
	case duckdb.TYPE_BOOLEAN:
		return Bool
	case duckdb.TYPE_TINYINT, duckdb.TYPE_SMALLINT, duckdb.TYPE_UTINYINT:
		return Int16
	case duckdb.TYPE_INTEGER, duckdb.TYPE_USMALLINT:
		return Int32
	case duckdb.TYPE_BIGINT, duckdb.TYPE_UINTEGER:
		return Int64
	case duckdb.TYPE_UBIGINT, duckdb.TYPE_HUGEINT, duckdb.TYPE_UHUGEINT, duckdb.TYPE_DECIMAL:
		return Numeric
	case duckdb.TYPE_FLOAT:
		return Float32
	case duckdb.TYPE_DOUBLE:
		return Float64
	case duckdb.TYPE_DATE:
		return Date
	case duckdb.TYPE_TIMESTAMP, duckdb.TYPE_TIMESTAMP_S, duckdb.TYPE_TIMESTAMP_MS, duckdb.TYPE_TIMESTAMP_NS:
		return Timestamp
	case duckdb.TYPE_TIMESTAMP_TZ:
		return TimestampTZ
	case duckdb.TYPE_TIME:
		return Time
	case duckdb.TYPE_INTERVAL:
		return Interval
	case duckdb.TYPE_UUID:
		return UUID
	case duckdb.TYPE_BLOB:
		return Bytes
	}
	return Text
}

// Statement is a checked statement, its result columns and the kinds
// DuckDB infers for its parameters ($1, $2, ...).
type Statement struct {
	SQL     string
	Columns []Column
	Params  []Kind
	// bound are an EXECUTE's arguments, the values of its body's
	// parameters (SQL is the body).
	bound []any
	// source is the statement as the analyst sent it, when SQL is its
	// rewrite to read the endpoint's catalog (see redirect).
	source string
}

// sent is the statement as the analyst sent it: what the allow list holds.
func (st *Statement) sent() string {
	if st.source != "" {
		return st.source
	}
	return st.SQL
}

var explainPrefix = regexp.MustCompile(`(?is)^\s*explain(\s+analyze)?\s+`)

// Prepare checks a statement and describes it.
func (a *AnalystSession) Prepare(ctx context.Context, query string) (*Statement, error) {
	body := explainPrefix.ReplaceAllString(query, "")
	if err := a.check(ctx, body); err != nil {
		return nil, err
	}
	st := &Statement{SQL: query}
	if body == query {
		rewritten, changed, err := a.redirect(ctx, query)
		if err != nil {
			return nil, err
		}
		if changed {
			st.SQL, st.source = rewritten, query
		}
	}
	return a.describe(ctx, st)
}

var (
	prepareNamed = regexp.MustCompile(`(?is)^\s*prepare\s+([a-z_][a-z0-9_]*)\s*(?:\([^)]*\))?\s+as\s+(.+?)\s*;?\s*$`)
	executeNamed = regexp.MustCompile(`(?is)^\s*execute\s+([a-z_][a-z0-9_]*)\s*(?:\((.*)\))?\s*;?\s*$`)
)

// PrepareNamed runs an SQL PREPARE name [(types)] AS body, as psql sends
// it for a parameterized query: body is checked as any statement is. ok is
// false for another statement.
func (a *AnalystSession) PrepareNamed(ctx context.Context, query string) (ok bool, err error) {
	m := prepareNamed.FindStringSubmatch(query)
	if m == nil {
		return false, nil
	}
	name, body := strings.ToLower(m[1]), m[2]
	// The type list is not kept: DuckDB infers the parameters' types.
	if _, err := a.Prepare(ctx, body); err != nil {
		return true, err
	}
	a.named[name] = body
	return true, nil
}

// Execute describes an SQL EXECUTE name(args) of a statement the session
// prepared: its body, with the arguments' values for its parameters. The
// arguments are checked as a SELECT list, so that they read nothing an
// analyst may not, and evaluated once, here. ok is false for another
// statement.
func (a *AnalystSession) Execute(ctx context.Context, query string) (st *Statement, ok bool, err error) {
	m := executeNamed.FindStringSubmatch(query)
	if m == nil {
		return nil, false, nil
	}
	name, args := strings.ToLower(m[1]), strings.TrimSpace(m[2])
	prepared, found := a.named[name]
	if !found {
		return nil, true, fmt.Errorf("prepared statement %q does not exist", name)
	}
	var bound []any
	if args != "" {
		if bound, err = a.evaluate(ctx, args); err != nil {
			return nil, true, err
		}
	}
	if st, err = a.Prepare(ctx, prepared); err != nil {
		return nil, true, err
	}
	if len(bound) != len(st.Params) {
		return nil, true, fmt.Errorf("EXECUTE %s: %d arguments given, the statement takes %d", name, len(bound), len(st.Params))
	}
	st.Params, st.bound = nil, bound
	return st, true, nil
}

// evaluate gives the values of a checked list of expressions.
func (a *AnalystSession) evaluate(ctx context.Context, list string) ([]any, error) {
	query := "SELECT " + list
	if err := a.check(ctx, query); err != nil {
		return nil, err
	}
	rows, err := a.conn.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
	}
	return vals, rows.Err()
}

// describe sets a statement's columns and parameters from DuckDB's
// preparation of it.
func (a *AnalystSession) describe(ctx context.Context, st *Statement) (*Statement, error) {
	cols, params, err := a.prepareInfo(ctx, st.SQL)
	if errors.Is(err, errUntypedResult) && len(params) > 0 {
		// DuckDB types the result of a statement whose parameter feeds a
		// table function (range($1)) only once it is bound; a client asks
		// for the columns before. The same statement with NULLs of the
		// parameters' types has the same columns.
		var typed string
		if typed, err = a.withNullParameters(ctx, st.SQL, params); err == nil {
			cols, _, err = a.prepareInfo(ctx, typed)
		}
	}
	if err != nil {
		return nil, err
	}
	st.Columns = cols
	for _, p := range params {
		st.Params = append(st.Params, kindOf(p))
	}
	return st, nil
}

var errUntypedResult = errors.New("the result's types are known once the parameters are bound")

// prepareInfo prepares query and gives its columns and its parameters'
// types (VARCHAR where DuckDB cannot infer one: given as text).
func (a *AnalystSession) prepareInfo(ctx context.Context, query string) (cols []Column, params []duckdb.Type, err error) {
	err = a.conn.Raw(func(dc any) error {
		prep, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return errors.New("the driver cannot prepare")
		}
		ds, err := prep.PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		defer ds.Close()
		stmt := ds.(*duckdb.Stmt)
		for i := 1; i <= stmt.NumInput(); i++ {
			t, err := stmt.ParamType(i)
			if err != nil || t == duckdb.TYPE_INVALID {
				t = duckdb.TYPE_VARCHAR
			}
			params = append(params, t)
		}
		n, err := stmt.ColumnCount()
		if err != nil {
			return err
		}
		for i := range n {
			name, err := stmt.ColumnName(i)
			if err != nil {
				return err
			}
			info, err := stmt.ColumnTypeInfo(i)
			if err != nil {
				return fmt.Errorf("%w: %w", errUntypedResult, err)
			}
			c := Column{Name: name, Kind: kindOf(info.InternalType()), duck: info.InternalType()}
			if d, ok := info.Details().(*duckdb.DecimalDetails); ok {
				c.Precision, c.Scale = int(d.Width), int(d.Scale)
			}
			cols = append(cols, c)
		}
		return nil
	})
	return cols, params, err
}

// castNames name the parameter types withNullParameters casts to.
var castNames = map[duckdb.Type]string{
	duckdb.TYPE_BOOLEAN: "BOOLEAN", duckdb.TYPE_TINYINT: "TINYINT", duckdb.TYPE_SMALLINT: "SMALLINT",
	duckdb.TYPE_INTEGER: "INTEGER", duckdb.TYPE_BIGINT: "BIGINT", duckdb.TYPE_UTINYINT: "UTINYINT",
	duckdb.TYPE_USMALLINT: "USMALLINT", duckdb.TYPE_UINTEGER: "UINTEGER", duckdb.TYPE_UBIGINT: "UBIGINT",
	duckdb.TYPE_HUGEINT: "HUGEINT", duckdb.TYPE_FLOAT: "FLOAT", duckdb.TYPE_DOUBLE: "DOUBLE",
	duckdb.TYPE_DECIMAL: "DECIMAL(38,10)", duckdb.TYPE_DATE: "DATE", duckdb.TYPE_TIME: "TIME",
	duckdb.TYPE_TIMESTAMP: "TIMESTAMP", duckdb.TYPE_TIMESTAMP_TZ: "TIMESTAMPTZ", duckdb.TYPE_INTERVAL: "INTERVAL",
	duckdb.TYPE_UUID: "UUID", duckdb.TYPE_BLOB: "BLOB",
}

// withNullParameters rewrites query with each parameter a NULL of its
// type, through DuckDB's own parse tree (json_serialize_sql) and printer
// (json_deserialize_sql), not by editing the text.
func (a *AnalystSession) withNullParameters(ctx context.Context, query string, params []duckdb.Type) (string, error) {
	tree, err := a.parseTree(ctx, query)
	if err != nil {
		return "", err
	}
	nulls := make(map[string]any, len(params))
	for i, p := range params {
		name, ok := castNames[p]
		if !ok {
			name = "VARCHAR"
		}
		cast, err := a.parseTree(ctx, "SELECT CAST(NULL AS "+name+")")
		if err != nil {
			return "", err
		}
		nulls[strconv.Itoa(i+1)] = firstSelected(cast)
	}
	rewriteTree(tree, func(node map[string]any) any {
		if node["class"] == "PARAMETER" {
			if id, _ := node["identifier"].(string); nulls[id] != nil {
				return nulls[id]
			}
		}
		return nil
	})
	return a.printTree(ctx, tree)
}

// firstSelected is the first expression a parsed SELECT selects.
func firstSelected(tree map[string]any) any {
	node, _ := tree["statements"].([]any)[0].(map[string]any)["node"].(map[string]any)
	return node["select_list"].([]any)[0]
}

// rewriteTree walks a parse tree, replacing each node for which replace
// returns one (nil: keep it and walk into it).
func rewriteTree(n any, replace func(map[string]any) any) any {
	switch v := n.(type) {
	case map[string]any:
		if r := replace(v); r != nil {
			return r
		}
		for k, c := range v {
			v[k] = rewriteTree(c, replace)
		}
	case []any:
		for i, c := range v {
			v[i] = rewriteTree(c, replace)
		}
	}
	return n
}

// printTree is the SQL of a parse tree, as DuckDB prints it.
func (a *AnalystSession) printTree(ctx context.Context, tree map[string]any) (string, error) {
	b, err := json.Marshal(tree)
	if err != nil {
		return "", err
	}
	var query string
	err = a.conn.QueryRowContext(ctx, "SELECT json_deserialize_sql(?::JSON)", string(b)).Scan(&query)
	return query, err
}

// parseTree is DuckDB's parse of one statement, as JSON.
func (a *AnalystSession) parseTree(ctx context.Context, query string) (map[string]any, error) {
	var tree string
	if err := a.conn.QueryRowContext(ctx, "SELECT json_serialize_sql(?::VARCHAR)::VARCHAR", query).Scan(&tree); err != nil {
		return nil, err
	}
	// Numbers stay as DuckDB wrote them: query_location is a uint64.
	dec := json.NewDecoder(strings.NewReader(tree))
	dec.UseNumber()
	var parsed map[string]any
	if err := dec.Decode(&parsed); err != nil {
		return nil, err
	}
	if parsed["error"] == true {
		return nil, fmt.Errorf("%v", parsed["error_message"])
	}
	if list, _ := parsed["statements"].([]any); len(list) != 1 {
		return nil, fmt.Errorf("%w: one statement at a time", ErrRefused)
	}
	return parsed, nil
}

// Query runs a prepared statement's SQL, checked again: it is what runs.
// An EXECUTE's arguments were bound by Execute. A SELECT's rows come from
// the result spool (see Rows); EXPLAIN's few rows from the driver.
func (a *AnalystSession) Query(ctx context.Context, st *Statement, args ...any) (*Rows, error) {
	explain := explainPrefix.MatchString(st.SQL)
	if err := a.check(ctx, explainPrefix.ReplaceAllString(st.sent(), "")); err != nil {
		return nil, err
	}
	if st.bound != nil {
		args = st.bound
	}
	if explain || len(st.Columns) == 0 {
		rows, err := a.conn.QueryContext(ctx, st.SQL, args...)
		if err != nil {
			return nil, err
		}
		r := newRows(st.Columns)
		r.direct = rows
		return r, nil
	}
	return a.spooled(ctx, st, args)
}

// check parses query with DuckDB and holds its whole tree to the allow list.
func (a *AnalystSession) check(ctx context.Context, query string) error {
	var tree string
	if err := a.conn.QueryRowContext(ctx, "SELECT json_serialize_sql(?::VARCHAR)::VARCHAR", query).Scan(&tree); err != nil {
		return err
	}
	var parsed struct {
		Error      bool              `json:"error"`
		Message    string            `json:"error_message"`
		Statements []json.RawMessage `json:"statements"`
	}
	if err := json.Unmarshal([]byte(tree), &parsed); err != nil {
		return err
	}
	switch {
	case parsed.Error && strings.Contains(parsed.Message, "Only SELECT"):
		return fmt.Errorf("%w: only SELECT (with WITH, EXPLAIN, DESCRIBE and SHOW) runs here: the SQL endpoint is read-only", ErrRefused)
	case parsed.Error:
		return errors.New(parsed.Message) // a syntax error: nothing ran
	case len(parsed.Statements) != 1:
		return fmt.Errorf("%w: one statement at a time", ErrRefused)
	}
	var node any
	if err := json.Unmarshal(parsed.Statements[0], &node); err != nil {
		return err
	}
	ctes := map[string]bool{}
	collectCTEs(node, ctes)
	if a.catalog != nil {
		// A client's unqualified pg_class is the catalog's (redirect).
		for name := range a.catalog.Tables {
			if short, ok := strings.CutPrefix(name, "pg_catalog."); ok {
				ctes[short] = true
			}
		}
	}
	return checkNode(node, ctes)
}

func collectCTEs(node any, ctes map[string]bool) {
	switch n := node.(type) {
	case map[string]any:
		if m, ok := n["cte_map"].(map[string]any); ok {
			if list, ok := m["map"].([]any); ok {
				for _, e := range list {
					if kv, ok := e.(map[string]any); ok {
						if k, ok := kv["key"].(string); ok {
							ctes[strings.ToLower(k)] = true
						}
					}
				}
			}
		}
		for _, v := range n {
			collectCTEs(v, ctes)
		}
	case []any:
		for _, v := range n {
			collectCTEs(v, ctes)
		}
	}
}

// checkNode walks the tree: every table it reads and every function it
// calls must be allowed.
func checkNode(node any, ctes map[string]bool) error {
	switch n := node.(type) {
	case map[string]any:
		typ, _ := n["type"].(string)
		switch typ {
		case "BASE_TABLE":
			name, _ := n["table_name"].(string)
			schema, _ := n["schema_name"].(string)
			catalog, _ := n["catalog_name"].(string)
			name, schema = strings.ToLower(name), strings.ToLower(schema)
			switch {
			case catalog == "" && schema == "" && (slices.Contains(AnalystTables, name) || ctes[name]):
			case catalog == "" && (schema == "pg_catalog" || schema == "information_schema"):
			default:
				return fmt.Errorf("%w: %s is not a table analysts read; they are %s", ErrRefused,
					strings.Trim(catalog+"."+schema+"."+name, "."), strings.Join(AnalystTables, ", "))
			}
		case "TABLE_FUNCTION":
			fn, _ := n["function"].(map[string]any)
			name, _ := fn["function_name"].(string)
			if !slices.Contains(allowedTableFunctions, strings.ToLower(name)) {
				return fmt.Errorf("%w: the table function %s reads outside the warehouse's tables", ErrRefused, name)
			}
		}
		if class, _ := n["class"].(string); class == "FUNCTION" {
			name, _ := n["function_name"].(string)
			if slices.Contains(deniedFunctions, strings.ToLower(name)) {
				return fmt.Errorf("%w: %s is not available here", ErrRefused, name)
			}
		}
		for _, v := range n {
			if err := checkNode(v, ctes); err != nil {
				return err
			}
		}
	case []any:
		for _, v := range n {
			if err := checkNode(v, ctes); err != nil {
				return err
			}
		}
	}
	return nil
}
