package warehouse

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
)

// presence remembers which keys have rows in a small table the API reads
// on most requests (a user's transaction edits, manual networth accounts),
// so a request for one of the many without skips a query that costs about
// as much as the request's main read. The Store is the warehouse's only
// writer (Query is read-only, and DuckDB locks the file against other
// processes), so the set is exact: loaded at open, and given a key before
// the write that adds its first row commits, so a reader that could see
// the row sees the key. Keys are not taken out when rows go: a stale key
// only costs the query.
type presence struct {
	mu   sync.RWMutex
	keys map[string]struct{}
}

func presenceKey(parts ...string) string { return strings.Join(parts, "\x00") }

// load reads the keys query lists (rows of string columns, joined).
func (p *presence) load(ctx context.Context, db *sql.DB, query string) error {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("warehouse: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	keys := map[string]struct{}{}
	parts := make([]string, len(cols))
	ptrs := make([]any, len(cols))
	for i := range parts {
		ptrs[i] = &parts[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("warehouse: %w", err)
		}
		keys[presenceKey(parts...)] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("warehouse: %w", err)
	}
	p.mu.Lock()
	p.keys = keys
	p.mu.Unlock()
	return nil
}

func (p *presence) add(parts ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keys == nil {
		p.keys = map[string]struct{}{}
	}
	p.keys[presenceKey(parts...)] = struct{}{}
}

func (p *presence) has(parts ...string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	_, ok := p.keys[presenceKey(parts...)]
	return ok
}

// anyAccount reports whether any of the partner's accounts has a key.
func (p *presence) anyAccount(partnerID string, accounts []Account) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, a := range accounts {
		if _, ok := p.keys[presenceKey(partnerID, a.ID)]; ok {
			return true
		}
	}
	return false
}
