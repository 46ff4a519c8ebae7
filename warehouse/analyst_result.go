package warehouse

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/duckdb/duckdb-go/v2"
)

// An analyst's result may be larger than the server's memory. The driver
// (duckdb-go) runs every statement through DuckDB's materializing result
// API: the whole result is built in memory before its first row is handed
// over (github.com/duckdb/duckdb-go/pull/165 is where streaming is being
// discussed). So a SELECT's rows are first written by DuckDB itself to a
// Parquet file in the result spool (COPY streams: a row group at a time),
// then read back a row group at a time as the client takes them, each
// chunk a query of its own that DuckDB answers from that row group alone
// (file_row_number's range prunes the others). The server's memory stays
// flat whatever the result's size; the disk holds the result until the
// last row has left, and the spool is emptied at every start. (arrow-go's
// Parquet reader would do too, but links gRPC and Arrow's compute kernels:
// 26 MB more resident in every flatfiler process.)

// resultRowGroup is the rows DuckDB buffers before writing a row group,
// and the rows read back at a time: about what is held in memory.
const resultRowGroup = 16384

// ResultSpool is where results wait for their client: beside the database.
func (s *Store) ResultSpool() string { return s.path + ".results" }

// Rows is a statement's result, read a row at a time.
type Rows struct {
	cols []Column
	vals []any
	ptrs []any
	err  error
	// direct is a result the driver holds whole: EXPLAIN's few rows; or
	// the chunk of a spooled result being read.
	direct *sql.Rows
	// spooled: the spool file, the session's connection that reads it,
	// and the first row of the next chunk.
	ctx   context.Context
	conn  *sql.Conn
	path  string
	next  int64
	taken int // rows of the current chunk
}

// Next moves to the next row.
func (r *Rows) Next() bool {
	for {
		if r.direct != nil && r.direct.Next() {
			if err := r.direct.Scan(r.ptrs...); err != nil {
				r.err = err
				return false
			}
			r.taken++
			if r.path != "" {
				if err := spooledValues(r.vals, r.cols); err != nil {
					r.err = err
					return false
				}
			}
			return true
		}
		if r.direct != nil {
			if err := r.direct.Err(); err != nil {
				r.err = err
				return false
			}
			r.direct.Close()
			r.direct = nil
		}
		// The next chunk of a spooled result; none after one that came
		// short (or any direct result's end).
		if r.path == "" || r.taken < resultRowGroup && r.next > 0 {
			return false
		}
		rows, err := r.conn.QueryContext(r.ctx, "SELECT * EXCLUDE (file_row_number) FROM read_parquet("+quote(r.path)+
			", file_row_number = true) WHERE file_row_number >= ? AND file_row_number < ? ORDER BY file_row_number", r.next, r.next+resultRowGroup)
		if err != nil {
			r.err = fmt.Errorf("reading the result back: %w", err)
			return false
		}
		r.direct, r.next, r.taken = rows, r.next+resultRowGroup, 0
	}
}

// Values are the current row's, as the driver would give them: bool,
// int8 to int64, uint8 to uint64, float32, float64, string (Text: JSON for
// lists and structs), []byte, duckdb.Decimal, *big.Int (HUGEINT),
// time.Time, duckdb.Interval, duckdb.UUID. They are valid until Next.
func (r *Rows) Values() []any { return r.vals }

// Err is what ended the rows early.
func (r *Rows) Err() error { return r.err }

// Close releases the result and removes its spool file.
func (r *Rows) Close() error {
	var err error
	if r.direct != nil {
		err = r.direct.Close()
	}
	if r.path != "" {
		os.Remove(r.path)
	}
	return err
}

func newRows(cols []Column) *Rows {
	r := &Rows{cols: cols, vals: make([]any, len(cols)), ptrs: make([]any, len(cols))}
	for i := range r.vals {
		r.ptrs[i] = &r.vals[i]
	}
	return r
}

// spooled runs a SELECT into the spool and opens it for reading.
func (a *AnalystSession) spooled(ctx context.Context, st *Statement, args []any) (*Rows, error) {
	f, err := os.CreateTemp(a.spool, "result-*.parquet")
	if err != nil {
		return nil, fmt.Errorf("result spool: %w", err)
	}
	path := f.Name()
	f.Close()
	names := make([]string, len(st.Columns))
	outs := make([]string, len(st.Columns))
	for i, c := range st.Columns {
		names[i] = fmt.Sprintf("c%d", i)
		outs[i] = spoolColumn(names[i], c)
	}
	// The statement passed the allow list as one whole SELECT, so its
	// parentheses balance; the newline ends a trailing -- comment.
	body := strings.TrimRight(strings.TrimSpace(st.SQL), "; \t\n")
	query := "COPY (SELECT " + strings.Join(outs, ", ") + " FROM (\n" + body + "\n) AS result(" + strings.Join(names, ", ") + "))" +
		" TO " + quote(path) + fmt.Sprintf(" (FORMAT parquet, ROW_GROUP_SIZE %d)", resultRowGroup)
	if err := a.copyOut(ctx, path, query, args); err != nil {
		os.Remove(path)
		return nil, err
	}
	r := newRows(st.Columns)
	r.ctx, r.conn, r.path = ctx, a.conn, path
	return r, nil
}

// ErrResultTooLarge is a result past the session's LimitResults.
var ErrResultTooLarge = errors.New("result too large")

// LimitResults caps the bytes a result may take in the spool (0: no
// cap), so that an analyst's SELECT cannot fill the disk the server
// receives and applies files on.
func (a *AnalystSession) LimitResults(bytes int64) { a.maxResult = bytes }

// copyOut runs the COPY into path, watching the file grow: past the cap
// the statement is interrupted.
func (a *AnalystSession) copyOut(ctx context.Context, path, query string, args []any) error {
	if a.maxResult <= 0 {
		_, err := a.conn.ExecContext(ctx, query, args...)
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if info, err := os.Stat(path); err == nil && info.Size() > a.maxResult {
					cancel(ErrResultTooLarge)
					return
				}
			}
		}
	}()
	_, err := a.conn.ExecContext(ctx, query, args...)
	tooLarge := errors.Is(context.Cause(ctx), ErrResultTooLarge)
	if info, serr := os.Stat(path); err == nil && serr == nil && info.Size() > a.maxResult {
		tooLarge = true // grew past the cap between two looks
	}
	if tooLarge {
		return fmt.Errorf("%w: over %d MB (--sql-max-result-size); aggregate, page with LIMIT, or use flatfiler export", ErrResultTooLarge, a.maxResult>>20)
	}
	return err
}

// spoolColumn is how a column is written to the spool: as itself when
// Parquet keeps it exactly, else in a form it does.
func spoolColumn(name string, c Column) string {
	switch {
	case c.Kind == Interval:
		// Parquet's INTERVAL keeps milliseconds.
		return fmt.Sprintf("CASE WHEN %[1]s IS NOT NULL THEN struct_pack(months := datepart('year', %[1]s) * 12 + datepart('month', %[1]s), "+
			"days := datepart('day', %[1]s), micros := datepart('hour', %[1]s)::BIGINT * 3600000000 + datepart('minute', %[1]s)::BIGINT * 60000000 + datepart('microseconds', %[1]s)) END", name)
	case c.duck == duckdb.TYPE_HUGEINT || c.duck == duckdb.TYPE_UHUGEINT || c.Kind == UUID:
		// Parquet writes HUGEINT as DOUBLE.
		return name + "::VARCHAR"
	case c.Kind == Text && c.duck != duckdb.TYPE_VARCHAR:
		switch c.duck {
		case duckdb.TYPE_LIST, duckdb.TYPE_ARRAY, duckdb.TYPE_STRUCT, duckdb.TYPE_MAP, duckdb.TYPE_UNION:
			return "to_json(" + name + ")::VARCHAR"
		}
		return name + "::VARCHAR"
	}
	return name
}

// spooledValues turns what the spool keeps in another form (see
// spoolColumn) back into the driver's values.
func spooledValues(vals []any, cols []Column) error {
	for i, v := range vals {
		if v == nil {
			continue
		}
		c := cols[i]
		switch {
		case c.Kind == Interval:
			parts, _ := v.(map[string]any)
			months, _ := parts["months"].(int64)
			days, _ := parts["days"].(int64)
			micros, _ := parts["micros"].(int64)
			vals[i] = duckdb.Interval{Months: int32(months), Days: int32(days), Micros: micros}
		case c.Kind == UUID:
			var u duckdb.UUID
			if err := u.Scan(v); err != nil {
				return fmt.Errorf("column %s: %w", c.Name, err)
			}
			vals[i] = u
		case c.duck == duckdb.TYPE_HUGEINT || c.duck == duckdb.TYPE_UHUGEINT:
			s, _ := v.(string)
			n, ok := new(big.Int).SetString(s, 10)
			if !ok {
				return fmt.Errorf("column %s: %q is not an integer", c.Name, s)
			}
			vals[i] = n
		}
	}
	return nil
}
