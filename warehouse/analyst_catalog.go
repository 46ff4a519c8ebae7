package warehouse

import (
	"context"
	"maps"
	"regexp"
	"strings"
	"sync"
)

// Clients of the SQL endpoint browse Postgres's own catalog (pg_catalog)
// on connect and to list tables and columns, with Postgres's type numbers,
// functions and casts (::regclass). DuckDB's pg_catalog describes DuckDB's
// tables (the warehouse's own, not the analyst's views) and lacks most of
// that. So the endpoint attaches a database holding a Postgres catalog of
// the analyst's tables (see api/pgwire), and a statement that reads
// pg_catalog is rewritten, on DuckDB's parse tree, to read it there.

// Catalog is a catalog an analyst's statement is redirected to.
type Catalog struct {
	// Database is the attached database holding it, in schema main.
	Database string
	// Tables are the tables it holds, by the name a client uses
	// ("pg_catalog.pg_class", "information_schema.tables"): a client's
	// unqualified pg_catalog name is redirected too, as Postgres's search
	// path finds it.
	Tables map[string]string
	// Functions are the macros it defines, called by their pg_catalog or
	// plain names, and Casts the types cast to by calling one (::regclass).
	Functions, Casts map[string]bool

	mentionsOnce sync.Once
	mentions     *regexp.Regexp // a statement that may read the catalog
}

// mayRead reports whether query may read the catalog: whether it names
// one of its tables, functions or casts.
func (c *Catalog) mayRead(query string) bool {
	c.mentionsOnce.Do(func() {
		words := []string{"pg_", "information_schema"}
		for name := range c.Functions {
			words = append(words, regexp.QuoteMeta(name))
		}
		for name := range c.Casts {
			words = append(words, regexp.QuoteMeta(name))
		}
		c.mentions = regexp.MustCompile(`(?i)` + strings.Join(words, "|"))
	})
	return c.mentions.MatchString(query)
}

// UseCatalog redirects the session's reads of pg_catalog to c.
func (a *AnalystSession) UseCatalog(c *Catalog) { a.catalog = c }

// redirect rewrites query to read the session's catalog; changed is false
// when it reads nothing of it. query has passed check.
func (a *AnalystSession) redirect(ctx context.Context, query string) (rewritten string, changed bool, err error) {
	c := a.catalog
	if c == nil || !c.mayRead(query) {
		return query, false, nil
	}
	tree, err := a.parseTree(ctx, query)
	if err != nil {
		return "", false, err
	}
	var call map[string]any // a template of a function call node
	var redirectNode func(map[string]any) any
	redirectNode = func(v map[string]any) any {
		switch {
		case v["type"] == "BASE_TABLE" && v["catalog_name"] == "":
			schema, _ := v["schema_name"].(string)
			name, _ := v["table_name"].(string)
			key := strings.ToLower(name)
			switch {
			case schema != "":
				key = strings.ToLower(schema) + "." + key
			case strings.HasPrefix(key, "pg_"):
				key = "pg_catalog." + key
			default:
				return nil
			}
			if target, ok := c.Tables[key]; ok {
				v["catalog_name"], v["schema_name"], v["table_name"] = c.Database, "main", target
				changed = true
			}
		case v["class"] == "FUNCTION":
			name, _ := v["function_name"].(string)
			schema, _ := v["schema"].(string)
			if c.Functions[strings.ToLower(name)] && (schema == "" || strings.EqualFold(schema, "pg_catalog")) {
				v["catalog"], v["schema"] = c.Database, "main"
				changed = true
			}
			if name == "regexp_full_match" && v["is_operator"] == false {
				// DuckDB reads Postgres's ~ as a whole-string match.
				v["function_name"] = "regexp_matches"
			}
		case v["class"] == "CAST":
			info, _ := v["cast_type"].(map[string]any)
			ti, _ := info["type_info"].(map[string]any)
			name, _ := ti["user_type_name"].(string)
			if !c.Casts[strings.ToLower(name)] {
				return nil
			}
			if call == nil {
				t, terr := a.parseTree(ctx, "SELECT f(NULL)")
				if terr != nil {
					err = terr
					return v
				}
				call = firstSelected(t).(map[string]any)
			}
			f := maps.Clone(call)
			f["function_name"], f["catalog"], f["schema"] = strings.ToLower(name), c.Database, "main"
			f["children"] = []any{rewriteTree(v["child"], redirectNode)}
			f["alias"] = v["alias"]
			changed = true
			return f
		}
		return nil
	}
	rewriteTree(tree, redirectNode)
	if err != nil || !changed {
		return query, false, err
	}
	rewritten, err = a.printTree(ctx, tree)
	return rewritten, err == nil, err
}
