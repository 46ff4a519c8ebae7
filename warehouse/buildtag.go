//go:build !duckdb_arrow

package warehouse

// The loader hands Arrow batches to DuckDB, which duckdb-go compiles only with
// the duckdb_arrow build tag. Build through the Makefile, or pass
// -tags=duckdb_arrow to go build, go test and go vet.
var _ = buildWithTag_duckdb_arrow_seeMakefile
