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

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/duckdb/duckdb-go/v2"
)

// An analyst's result may be larger than the server's memory. The driver
// (duckdb-go) runs every statement through DuckDB's materializing result
// API: the whole result is built in memory before its first row is handed
// over (github.com/duckdb/duckdb-go/pull/165 is where streaming is being
// discussed). So a SELECT's rows are first written by DuckDB itself to a
// Parquet file in the result spool (COPY streams: a row group at a time)
// and read back here a batch at a time, as the client takes them. The
// server's memory stays flat whatever the result's size; the disk holds
// the result until the last row has left (the file is unlinked as soon as
// it is open, so a crash leaves nothing behind).

// resultRowGroup is the rows DuckDB buffers before writing a row group,
// and so about the rows held in memory on either side.
const resultRowGroup = 16384

// resultBatch is the rows read from the spool at a time.
const resultBatch = 1024

// ResultSpool is where results wait for their client: beside the database.
func (s *Store) ResultSpool() string { return s.path + ".results" }

// Rows is a statement's result, read a row at a time.
type Rows struct {
	cols []Column
	// direct is a result the driver holds whole: EXPLAIN's few rows.
	direct *sql.Rows
	vals   []any
	ptrs   []any
	// reader reads a spooled result.
	spool  *file.Reader
	reader pqarrow.RecordReader
	batch  arrow.RecordBatch
	row    int
	err    error
}

// Next moves to the next row.
func (r *Rows) Next() bool {
	if r.direct != nil {
		if !r.direct.Next() {
			return false
		}
		if err := r.direct.Scan(r.ptrs...); err != nil {
			r.err = err
			return false
		}
		return true
	}
	if r.reader == nil {
		return false
	}
	r.row++
	for r.batch == nil || r.row >= int(r.batch.NumRows()) {
		if !r.reader.Next() {
			if err := r.reader.Err(); err != nil && !errors.Is(err, context.Canceled) {
				r.err = fmt.Errorf("reading the result back: %w", err)
			}
			return false
		}
		r.batch, r.row = r.reader.RecordBatch(), 0
	}
	for i := range r.vals {
		v, err := arrowValue(r.batch.Column(i), r.row, r.cols[i])
		if err != nil {
			r.err = fmt.Errorf("column %s: %w", r.cols[i].Name, err)
			return false
		}
		r.vals[i] = v
	}
	return true
}

// Values are the current row's, as the driver would give them: bool,
// int8 to int64, uint8 to uint64, float32, float64, string (Text: JSON for
// lists and structs), []byte, duckdb.Decimal, *big.Int (HUGEINT),
// time.Time, duckdb.Interval, duckdb.UUID. They are valid until Next: a
// string may share the spool's buffer.
func (r *Rows) Values() []any { return r.vals }

// Err is what ended the rows early.
func (r *Rows) Err() error {
	if r.err != nil {
		return r.err
	}
	if r.direct != nil {
		return r.direct.Err()
	}
	return nil
}

// Close releases the result.
func (r *Rows) Close() error {
	if r.direct != nil {
		return r.direct.Close()
	}
	if r.reader != nil {
		r.reader.Release()
	}
	if r.spool != nil {
		return r.spool.Close()
	}
	return nil
}

func newRows(cols []Column) *Rows {
	r := &Rows{cols: cols, vals: make([]any, len(cols)), ptrs: make([]any, len(cols)), row: -1}
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
	defer os.Remove(path) // unlinked once open: the open file keeps its bytes
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
		return nil, err
	}
	spool, err := file.OpenParquetFile(path, false, file.WithReadProps(&parquet.ReaderProperties{BufferedStreamEnabled: true, BufferSize: 1 << 20}))
	if err != nil {
		return nil, fmt.Errorf("result spool: %w", err)
	}
	r := newRows(st.Columns)
	r.spool = spool
	if spool.NumRowGroups() == 0 {
		return r, nil
	}
	fr, err := pqarrow.NewFileReader(spool, pqarrow.ArrowReadProperties{BatchSize: resultBatch}, memory.DefaultAllocator)
	if err == nil {
		r.reader, err = fr.GetRecordReader(ctx, nil, nil)
	}
	if err != nil {
		spool.Close()
		return nil, fmt.Errorf("result spool: %w", err)
	}
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

// arrowValue is row i of a spooled column, as the driver would give it.
func arrowValue(col arrow.Array, i int, c Column) (any, error) {
	if col.IsNull(i) {
		return nil, nil
	}
	switch a := col.(type) {
	case *array.Boolean:
		return a.Value(i), nil
	case *array.Int8:
		return a.Value(i), nil
	case *array.Int16:
		return a.Value(i), nil
	case *array.Int32:
		return a.Value(i), nil
	case *array.Int64:
		return a.Value(i), nil
	case *array.Uint8:
		return a.Value(i), nil
	case *array.Uint16:
		return a.Value(i), nil
	case *array.Uint32:
		return a.Value(i), nil
	case *array.Uint64:
		return a.Value(i), nil
	case *array.Float32:
		return a.Value(i), nil
	case *array.Float64:
		return a.Value(i), nil
	case *array.Binary:
		return a.Value(i), nil
	case *array.String:
		return textValue(a.Value(i), c)
	case *array.LargeString:
		return textValue(a.Value(i), c)
	case *array.Decimal128:
		t := a.DataType().(*arrow.Decimal128Type)
		return duckdb.Decimal{Width: uint8(t.Precision), Scale: uint8(t.Scale), Value: a.Value(i).BigInt()}, nil
	case *array.Decimal64:
		t := a.DataType().(*arrow.Decimal64Type)
		return duckdb.Decimal{Width: uint8(t.Precision), Scale: uint8(t.Scale), Value: big.NewInt(int64(a.Value(i)))}, nil
	case *array.Date32:
		return a.Value(i).ToTime(), nil
	case *array.Timestamp:
		return a.Value(i).ToTime(a.DataType().(*arrow.TimestampType).Unit).UTC(), nil
	case *array.Time64:
		return time.Time{}.Add(a.Value(i).ToTime(a.DataType().(*arrow.Time64Type).Unit).Sub(time.Unix(0, 0))), nil
	case *array.Struct: // an interval, see spoolColumn
		part := func(n int) int64 {
			switch f := a.Field(n).(type) {
			case *array.Int64:
				return f.Value(i)
			case *array.Int32:
				return int64(f.Value(i))
			}
			return 0
		}
		return duckdb.Interval{Months: int32(part(0)), Days: int32(part(1)), Micros: part(2)}, nil
	}
	return nil, fmt.Errorf("the result spool holds %s, which the endpoint does not map", col.DataType())
}

func textValue(s string, c Column) (any, error) {
	switch {
	case c.Kind == UUID:
		var u duckdb.UUID
		if err := u.Scan(s); err != nil {
			return nil, err
		}
		return u, nil
	case c.Kind == Numeric: // HUGEINT, see spoolColumn
		n, ok := new(big.Int).SetString(s, 10)
		if !ok {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return n, nil
	}
	return s, nil
}
