package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestStartServesOnLoopback(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	url, err := s.Database(ctx, "one_test")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var addr, db string
	if err := conn.QueryRow(ctx, "SELECT host(inet_server_addr()), current_database()").Scan(&addr, &db); err != nil {
		t.Fatal(err)
	}
	if addr != "127.0.0.1" || db != "one_test" {
		t.Fatalf("connected to %s on %s; want one_test on 127.0.0.1", db, addr)
	}
}
