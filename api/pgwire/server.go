// Package pgwire is the SQL endpoint for analysts: the Postgres wire
// protocol (github.com/jeroenrinzema/psql-wire) in front of the warehouse,
// so psql, pgx, psycopg, JDBC and BI tools connect to the database
// "warehouse" with an analyst's name and password. Every statement runs in
// the analyst's session (warehouse.AnalystSession): read-only, checked
// against an allow list, scoped to the analyst's partners.
package pgwire

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/duckdb/duckdb-go/v2"
	"github.com/jackc/pgx/v5/pgtype"
	wire "github.com/jeroenrinzema/psql-wire"
	"github.com/jeroenrinzema/psql-wire/codes"
	pgerror "github.com/jeroenrinzema/psql-wire/errors"
	"github.com/jeroenrinzema/psql-wire/pkg/buffer"

	"github.com/flatfiler/flatfiler/warehouse"
)

// Database is the name clients connect to.
const Database = "warehouse"

// Config wires the endpoint.
type Config struct {
	Store    *warehouse.Store
	Analysts *Analysts
	// TLS, if set, is offered to clients; without it the endpoint listens
	// on loopback only, since passwords cross in clear text.
	TLS *tls.Config
	// StatementTimeout bounds each statement; default 60s.
	StatementTimeout time.Duration
	// MaxQueries bounds analyst statements running at once; default 1, so
	// that analysts share one core and the reporting API keeps the rest.
	MaxQueries int
	// MaxResultBytes caps a result in the spool (warehouse.Rows); 0: none.
	MaxResultBytes int64
	Logger         *slog.Logger
}

// Server is the endpoint.
type Server struct {
	cfg   Config
	wire  *wire.Server
	slots chan struct{}
}

type sessionKey struct{}

// New makes the endpoint.
func New(cfg Config) (*Server, error) {
	if cfg.StatementTimeout <= 0 {
		cfg.StatementTimeout = 60 * time.Second
	}
	if cfg.MaxQueries <= 0 {
		cfg.MaxQueries = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, slots: make(chan struct{}, cfg.MaxQueries)}
	opts := []wire.OptionFn{
		wire.SessionAuthStrategy(s.auth),
		wire.CloseConn(s.closeSession),
		wire.Version("16.0 (flatfiler, DuckDB)"),
		wire.GlobalParameters(wire.Parameters{"TimeZone": "UTC", "DateStyle": "ISO, MDY", "standard_conforming_strings": "on"}),
		wire.Logger(cfg.Logger),
		wire.ExtendTypes(postgresTypes),
	}
	if cfg.TLS != nil {
		opts = append(opts, wire.TLSConfig(cfg.TLS))
	}
	w, err := wire.NewServer(s.parse, opts...)
	if err != nil {
		return nil, err
	}
	s.wire = w
	return s, nil
}

// Serve answers connections on ln until Close. Without TLS, ln must be on
// loopback: passwords cross in clear text.
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.TLS == nil {
		if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
			return fmt.Errorf("sql endpoint on %s: a non-loopback address needs --sql-tls-cert and --sql-tls-key (passwords cross in clear text)", ln.Addr())
		}
	}
	return s.wire.Serve(ln)
}

// Close stops the endpoint.
func (s *Server) Close() error { return s.wire.Close() }

// auth refuses another database by name, before the password is asked,
// then checks the password (in clear text: loopback or TLS only, see Serve).
func (s *Server) auth(ctx context.Context, writer *buffer.Writer, reader *buffer.Reader) (context.Context, error) {
	if db := wire.ClientParameters(ctx)[wire.ParamDatabase]; db != Database {
		err := pgerror.WithSeverity(pgerror.WithCode(fmt.Errorf("database %q does not exist; connect to %q", db, Database),
			codes.InvalidCatalogName), pgerror.LevelFatal)
		_ = wire.WriteUnterminatedError(writer, err)
		return ctx, err
	}
	return wire.ClearTextPassword(s.login)(ctx, writer, reader)
}

func (s *Server) login(ctx context.Context, _, user, password string) (context.Context, bool, error) {
	a, ok := s.cfg.Analysts.Check(user, password)
	if !ok {
		s.cfg.Logger.Info("sql endpoint: login refused", "analyst", user)
		return ctx, false, nil
	}
	sess, err := s.cfg.Store.AnalystSession(ctx, a.Scope())
	if err != nil {
		return ctx, false, err
	}
	if err := ensureCatalog(ctx, s.cfg.Store, sess); err != nil {
		sess.Close()
		s.cfg.Logger.Error("sql endpoint: the catalog for clients", "err", err)
		return ctx, false, err
	}
	sess.UseCatalog(pgCatalog)
	sess.LimitResults(s.cfg.MaxResultBytes)
	s.cfg.Logger.Info("sql endpoint: analyst connected", "analyst", user, "partners", strings.Join(a.Scope(), ","))
	return context.WithValue(ctx, sessionKey{}, sess), true, nil
}

func (s *Server) closeSession(ctx context.Context) error {
	if sess, ok := ctx.Value(sessionKey{}).(*warehouse.AnalystSession); ok {
		return sess.Close()
	}
	return nil
}

var (
	// Statements a client sends that change nothing here: sessions are
	// read-only and their settings are the server's.
	harmless = regexp.MustCompile(`(?is)^\s*(set|reset|begin|start\s+transaction|commit|rollback|end|discard|deallocate|close|unlisten)\b`)
	showOne  = regexp.MustCompile(`(?is)^\s*show\s+([a-z_][a-z0-9_.]*)\s*;?\s*$`)
	tagWord  = regexp.MustCompile(`(?is)^\s*([a-z]+)`)
)

// shown are the settings clients ask for with SHOW.
var shown = map[string]string{
	"server_version": "16.0", "server_version_num": "160000", "server_encoding": "UTF8", "client_encoding": "UTF8", "standard_conforming_strings": "on",
	"timezone": "UTC", "datestyle": "ISO, MDY", "transaction_isolation": "read committed", "integer_datetimes": "on",
	"default_transaction_read_only": "on", "transaction_read_only": "on", "max_identifier_length": "63",
}

func (s *Server) parse(ctx context.Context, query wire.Query) (wire.PreparedStatements, error) {
	sess, ok := ctx.Value(sessionKey{}).(*warehouse.AnalystSession)
	if !ok {
		return nil, errors.New("no session")
	}
	q := strings.TrimSpace(query.Query)
	switch {
	case strings.Trim(q, "; \n\t") == "":
		return wire.Prepared(wire.NewStatement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
			return w.Empty()
		})), nil
	case harmless.MatchString(q):
		tag := strings.ToUpper(tagWord.FindStringSubmatch(q)[1])
		return wire.Prepared(wire.NewStatement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
			return w.Complete(tag)
		})), nil
	}
	if m := showOne.FindStringSubmatch(q); m != nil && !strings.EqualFold(m[1], "tables") {
		value := shown[strings.ToLower(m[1])]
		cols := wire.Columns{{Name: strings.ToLower(m[1]), Oid: pgtype.TextOID, Width: -1}}
		return wire.Prepared(wire.NewStatement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
			if err := w.Row([]any{value}); err != nil {
				return err
			}
			return w.Complete("SHOW")
		}, wire.WithColumns(cols))), nil
	}
	if a, ok, err := describe(ctx, sess, q); ok || err != nil {
		if err != nil {
			return nil, sqlError(err)
		}
		return a.statement(), nil
	}
	if named, err := sess.PrepareNamed(ctx, q); named {
		if err != nil {
			return nil, sqlError(err)
		}
		return wire.Prepared(wire.NewStatement(func(ctx context.Context, w wire.DataWriter, _ []wire.Parameter) error {
			return w.Complete("PREPARE")
		})), nil
	}
	st, executes, err := sess.Execute(ctx, q)
	if !executes {
		st, err = sess.Prepare(ctx, q)
	}
	if unanswered(q, err) {
		return answer{columns: []string{"?column?"}}.statement(), nil
	}
	if err != nil {
		return nil, sqlError(err)
	}
	cols := make(wire.Columns, len(st.Columns))
	for i, c := range st.Columns {
		cols[i] = wire.Column{Name: c.Name, Oid: oidOf(c.Kind), Width: -1, TypeModifier: typeModifier(c)}
	}
	params := make([]uint32, len(st.Params))
	for i, k := range st.Params {
		params[i] = oidOf(k)
	}
	run := func(ctx context.Context, w wire.DataWriter, parameters []wire.Parameter) error {
		return s.run(ctx, sess, st, w, parameters, params)
	}
	return wire.Prepared(wire.NewStatement(run, wire.WithColumns(cols), wire.WithParameters(params))), nil
}

// run executes a statement and writes its rows as the client takes them
// (a SELECT's from the result spool: see warehouse.Rows).
func (s *Server) run(ctx context.Context, sess *warehouse.AnalystSession, st *warehouse.Statement, w wire.DataWriter, parameters []wire.Parameter, oids []uint32) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StatementTimeout)
	defer cancel()
	args := make([]any, len(parameters))
	for i, p := range parameters {
		oid := uint32(pgtype.TextOID)
		if i < len(oids) {
			oid = oids[i]
		}
		v, err := p.Scan(oid)
		if err != nil {
			return pgerror.WithCode(fmt.Errorf("parameter $%d: %w", i+1, err), codes.InvalidParameterValue)
		}
		args[i] = v
	}
	// The slot is DuckDB's work: a slow client reading a spooled result
	// holds none. That work runs at the lowest priority (see atLowPriority).
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return s.timeout(ctx, ctx.Err())
	}
	rows, err := atLowPriority(func() (*warehouse.Rows, error) { return sess.Query(ctx, st, args...) })
	<-s.slots
	if err != nil {
		return s.timeout(ctx, sqlError(err))
	}
	defer rows.Close()
	out := make([]any, len(st.Columns))
	n := 0
	for rows.Next() {
		for i, v := range rows.Values() {
			out[i] = toWire(st.Columns[i].Kind, v)
		}
		if err := w.Row(out); err != nil {
			return err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return s.timeout(ctx, sqlError(err))
	}
	if n == 0 && len(st.Columns) == 0 {
		return w.Empty()
	}
	return w.Complete(fmt.Sprintf("SELECT %d", n))
}

// timeout names a statement the timeout ended.
func (s *Server) timeout(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return pgerror.WithCode(fmt.Errorf("canceling statement due to statement timeout (%s, --sql-statement-timeout)", s.cfg.StatementTimeout), codes.QueryCanceled)
	}
	return err
}

// sqlError gives an error its SQLSTATE: a refusal is an access rule.
func sqlError(err error) error {
	if errors.Is(err, warehouse.ErrRefused) {
		return pgerror.WithCode(err, codes.InsufficientPrivilege)
	}
	if errors.Is(err, warehouse.ErrResultTooLarge) {
		return pgerror.WithCode(err, codes.ProgramLimitExceeded)
	}
	return pgerror.WithCode(err, codes.SyntaxErrorOrAccessRuleViolation)
}

func oidOf(k warehouse.Kind) uint32 {
	switch k {
	case warehouse.Bool:
		return pgtype.BoolOID
	case warehouse.Int16:
		return pgtype.Int2OID
	case warehouse.Int32:
		return pgtype.Int4OID
	case warehouse.Int64:
		return pgtype.Int8OID
	case warehouse.Float32:
		return pgtype.Float4OID
	case warehouse.Float64:
		return pgtype.Float8OID
	case warehouse.Numeric:
		return pgtype.NumericOID
	case warehouse.Date:
		return pgtype.DateOID
	case warehouse.Timestamp:
		return pgtype.TimestampOID
	case warehouse.TimestampTZ:
		return pgtype.TimestamptzOID
	case warehouse.Time:
		return pgtype.TimeOID
	case warehouse.Interval:
		return pgtype.IntervalOID
	case warehouse.UUID:
		return pgtype.UUIDOID
	case warehouse.Bytes:
		return pgtype.ByteaOID
	}
	return pgtype.TextOID
}

// toWire converts a value DuckDB's driver returns to one pgtype encodes for
// the column's type.
func toWire(k warehouse.Kind, v any) any {
	if v == nil {
		return nil
	}
	switch x := v.(type) {
	case duckdb.Decimal:
		return pgtype.Numeric{Int: x.Value, Exp: -int32(x.Scale), Valid: true}
	case *big.Int:
		return pgtype.Numeric{Int: x, Valid: true}
	case uint64:
		return pgtype.Numeric{Int: new(big.Int).SetUint64(x), Valid: true}
	case int8:
		return int16(x)
	case uint8:
		return int16(x)
	case uint16:
		return int32(x)
	case uint32:
		return int64(x)
	case duckdb.Interval:
		return pgtype.Interval{Months: x.Months, Days: x.Days, Microseconds: x.Micros, Valid: true}
	case time.Time:
		if k == warehouse.Time {
			return pgtype.Time{Microseconds: int64(x.Hour())*3_600_000_000 + int64(x.Minute())*60_000_000 +
				int64(x.Second())*1_000_000 + int64(x.Nanosecond()/1000), Valid: true}
		}
		return x
	case duckdb.UUID:
		return pgtype.UUID{Bytes: x, Valid: true}
	}
	if k == warehouse.Text {
		if s, ok := v.(string); ok {
			return s
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		return string(b)
	}
	return v
}
