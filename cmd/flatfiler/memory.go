package main

import (
	"flag"
	"fmt"

	"github.com/flatfiler/flatfiler/fixtures/gen"
)

// memoryFlags are DuckDB's two memory limits, as ingest and serve take
// them: the usual one, and the one while a file commits, when the parser's
// share of the process's budget (goMemoryLimit) is idle and the commit's
// sort can use it instead of spilling.
type memoryFlags struct{ usual, commit string }

func addMemoryFlags(fs *flag.FlagSet) *memoryFlags {
	m := &memoryFlags{}
	fs.StringVar(&m.usual, "memory-limit", "128MB", "DuckDB memory limit; past it DuckDB spills to disk")
	fs.StringVar(&m.commit, "commit-memory-limit", "128MB", "DuckDB memory limit while a file or batch commits (at least --memory-limit)")
	return m
}

// limits checks both and returns them, the commit's raised to the usual
// one if it is lower.
func (m *memoryFlags) limits() (usual, commit string, err error) {
	u, err := gen.ParseSize(m.usual)
	if err != nil {
		return "", "", fmt.Errorf("--memory-limit: %w", err)
	}
	c, err := gen.ParseSize(m.commit)
	if err != nil {
		return "", "", fmt.Errorf("--commit-memory-limit: %w", err)
	}
	if c < u {
		return m.usual, m.usual, nil
	}
	return m.usual, m.commit, nil
}
