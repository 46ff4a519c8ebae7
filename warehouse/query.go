package warehouse

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/duckdb/duckdb-go/v2"
)

// Query runs one read-only SQL statement and writes its rows to w as an aligned
// table, CSV or JSON (an array of objects). On a writable warehouse (the
// running server's) only SELECT and EXPLAIN are allowed, and they run in a
// transaction that is rolled back.
func (s *Store) Query(ctx context.Context, query, format string, w io.Writer) error {
	var q interface {
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	} = s.db()
	if !s.opts.ReadOnly {
		conn, err := s.db().Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := readOnlyStatement(ctx, conn, query); err != nil {
			return err
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		q = tx
	}
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	types, err := rows.ColumnTypes()
	if err != nil {
		return err
	}
	cell := func(i int, v any) string { return display(v, types[i].DatabaseTypeName()) }
	var emit func([]any) error
	var flush func() error
	switch format {
	case "", "table":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
		emit = func(v []any) error {
			cells := make([]string, len(v))
			for i, x := range v {
				cells[i] = cell(i, x)
			}
			_, err := fmt.Fprintln(tw, strings.Join(cells, "\t"))
			return err
		}
		flush = tw.Flush
	case "csv":
		cw := csv.NewWriter(w)
		if err := cw.Write(cols); err != nil {
			return err
		}
		emit = func(v []any) error {
			cells := make([]string, len(v))
			for i, x := range v {
				if x != nil {
					cells[i] = cell(i, x)
				}
			}
			return cw.Write(cells)
		}
		flush = func() error { cw.Flush(); return cw.Error() }
	case "json":
		n := 0
		fmt.Fprint(w, "[")
		emit = func(v []any) error {
			obj := make(map[string]any, len(v))
			for i, x := range v {
				switch x.(type) {
				case nil, string, bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64:
				default:
					// Decimals stay exact strings ("-10.00"), times RFC 3339.
					x = cell(i, x)
				}
				obj[cols[i]] = x
			}
			b, err := json.Marshal(obj)
			if err != nil {
				return err
			}
			if n > 0 {
				fmt.Fprint(w, ",")
			}
			n++
			_, err = fmt.Fprintf(w, "\n  %s", b)
			return err
		}
		flush = func() error { _, err := fmt.Fprintln(w, "\n]"); return err }
	default:
		return fmt.Errorf("unknown format %q: want table, csv or json", format)
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		if err := emit(vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return flush()
}

// readOnlyStatement refuses anything but one SELECT or EXPLAIN, as DuckDB
// classifies the statement when preparing it.
func readOnlyStatement(ctx context.Context, conn *sql.Conn, query string) error {
	return conn.Raw(func(driverConn any) error {
		c, ok := driverConn.(*duckdb.Conn)
		if !ok {
			return fmt.Errorf("warehouse: unexpected driver connection %T", driverConn)
		}
		stmt, err := c.PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		defer stmt.Close()
		typ, err := stmt.(*duckdb.Stmt).StatementType()
		if err != nil {
			return err
		}
		if typ != duckdb.STATEMENT_TYPE_SELECT && typ != duckdb.STATEMENT_TYPE_EXPLAIN {
			return fmt.Errorf("the warehouse is read-only here: only SELECT and EXPLAIN statements")
		}
		return nil
	})
}

// display renders a DuckDB value as an analyst expects to read it: decimals
// with their scale (-10.00), dates as dates, instants in RFC 3339.
func display(v any, dbType string) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case duckdb.Decimal:
		return formatDecimal(x)
	case time.Time:
		if dbType == "DATE" {
			return x.Format(time.DateOnly)
		}
		return x.Format(time.RFC3339)
	case []byte:
		return string(x)
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

func formatDecimal(d duckdb.Decimal) string {
	digits := new(big.Int).Abs(d.Value).String()
	scale := int(d.Scale)
	if len(digits) <= scale {
		digits = strings.Repeat("0", scale-len(digits)+1) + digits
	}
	out := digits
	if scale > 0 {
		out = digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
	}
	if d.Value.Sign() < 0 {
		out = "-" + out
	}
	return out
}
