package pgwire

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/flatfiler/flatfiler/warehouse"
)

// JDBC drivers and BI tools list schemas, tables and columns by querying
// Postgres's catalog (pg_catalog.pg_class, pg_attribute, pg_type, ...)
// with Postgres's type numbers, functions (format_type, current_schemas)
// and casts ('pg_class'::regclass). The endpoint keeps such a catalog of
// the analyst's tables in a small in-memory database attached beside the
// warehouse, and the session redirects a statement's pg_catalog reads
// there (warehouse.Catalog). Every analyst sees the same four tables, so
// one catalog serves all.

// catalogDB is the attached database.
const catalogDB = "flatfiler_pg"

// Postgres's numbers for the catalog's fixed rows.
const (
	pgCatalogNS   = 11
	publicNS      = 2200
	infoSchemaNS  = 13000
	ownerOID      = 10
	databaseOID   = 16383
	relationClass = 1259 // pg_class
)

// pgType is a type the endpoint sends, as pg_type lists it, with
// format_type's text.
type pgType struct {
	oid          uint32
	name, format string
	length       int
	category     string
	byValue      bool
}

// pgTypes are the endpoint's types.
var pgTypes = []pgType{
	{16, "bool", "boolean", 1, "B", true}, {17, "bytea", "bytea", -1, "U", false},
	{18, "char", `"char"`, 1, "Z", true}, {19, "name", "name", 64, "S", false},
	{20, "int8", "bigint", 8, "N", true}, {21, "int2", "smallint", 2, "N", true},
	{23, "int4", "integer", 4, "N", true}, {25, "text", "text", -1, "S", false},
	{26, "oid", "oid", 4, "N", true}, {114, "json", "json", -1, "U", false},
	{700, "float4", "real", 4, "N", true}, {701, "float8", "double precision", 8, "N", true},
	{1043, "varchar", "character varying", -1, "S", false}, {1082, "date", "date", 4, "D", true},
	{1083, "time", "time without time zone", 8, "D", true},
	{1114, "timestamp", "timestamp without time zone", 8, "D", true},
	{1184, "timestamptz", "timestamp with time zone", 8, "D", true},
	{1186, "interval", "interval", 16, "T", false}, {1700, "numeric", "numeric", -1, "N", false},
	{2950, "uuid", "uuid", 16, "U", false},
}

// typeModifier is a column's atttypmod: numeric's precision and scale.
func typeModifier(c warehouse.Column) int32 {
	if c.Kind == warehouse.Numeric && c.Precision > 0 {
		return int32(c.Precision<<16|c.Scale) + 4
	}
	return -1
}

// pgCatalog is what the session redirects.
var pgCatalog = &warehouse.Catalog{
	Database: catalogDB,
	Tables: map[string]string{
		"information_schema.tables": "information_schema_tables", "information_schema.columns": "information_schema_columns",
		"information_schema.schemata": "information_schema_schemata", "information_schema.views": "information_schema_views",
	},
	Functions: map[string]bool{},
	Casts:     map[string]bool{"regclass": true, "regtype": true, "regnamespace": true, "regproc": true, "oid": true},
}

func init() {
	for _, t := range catalogTables {
		name, _, _ := strings.Cut(t, "(")
		pgCatalog.Tables["pg_catalog."+name] = name
	}
	for _, m := range catalogMacros {
		name, _, _ := strings.Cut(m, "(")
		pgCatalog.Functions[name] = true
	}
	for cast := range pgCatalog.Casts {
		pgCatalog.Functions[cast] = true
	}
}

// catalogTables are the tables created empty, then filled where Postgres
// would have rows for the analyst's tables.
var catalogTables = []string{
	"pg_namespace(oid INTEGER, nspname VARCHAR, nspowner INTEGER, nspacl VARCHAR)",
	"pg_class(oid INTEGER, relname VARCHAR, relnamespace INTEGER, reltype INTEGER, reloftype INTEGER, relowner INTEGER, relam INTEGER, " +
		"relfilenode INTEGER, reltablespace INTEGER, relpages INTEGER, reltuples REAL, relallvisible INTEGER, reltoastrelid INTEGER, " +
		"relhasindex BOOLEAN, relisshared BOOLEAN, relpersistence VARCHAR, relkind VARCHAR, relnatts SMALLINT, relchecks SMALLINT, " +
		"relhasrules BOOLEAN, relhastriggers BOOLEAN, relhassubclass BOOLEAN, relrowsecurity BOOLEAN, relforcerowsecurity BOOLEAN, " +
		"relispopulated BOOLEAN, relreplident VARCHAR, relispartition BOOLEAN, relrewrite INTEGER, relhasoids BOOLEAN, relacl VARCHAR, " +
		"reloptions VARCHAR[], relpartbound VARCHAR)",
	"pg_attribute(attrelid INTEGER, attname VARCHAR, atttypid INTEGER, attstattarget INTEGER, attlen SMALLINT, attnum SMALLINT, " +
		"attndims INTEGER, attcacheoff INTEGER, atttypmod INTEGER, attbyval BOOLEAN, attalign VARCHAR, attstorage VARCHAR, " +
		"attcompression VARCHAR, attnotnull BOOLEAN, atthasdef BOOLEAN, atthasmissing BOOLEAN, attidentity VARCHAR, " +
		"attgenerated VARCHAR, attisdropped BOOLEAN, attislocal BOOLEAN, attinhcount INTEGER, attcollation INTEGER, attacl VARCHAR, " +
		"attoptions VARCHAR[], attfdwoptions VARCHAR[])",
	"pg_type(oid INTEGER, typname VARCHAR, typnamespace INTEGER, typowner INTEGER, typlen SMALLINT, typbyval BOOLEAN, typtype VARCHAR, " +
		"typcategory VARCHAR, typispreferred BOOLEAN, typisdefined BOOLEAN, typdelim VARCHAR, typrelid INTEGER, typelem INTEGER, " +
		"typarray INTEGER, typinput VARCHAR, typoutput VARCHAR, typreceive VARCHAR, typsend VARCHAR, typalign VARCHAR, " +
		"typstorage VARCHAR, typnotnull BOOLEAN, typbasetype INTEGER, typtypmod INTEGER, typndims INTEGER, typcollation INTEGER, " +
		"typdefault VARCHAR, typacl VARCHAR)",
	"pg_description(objoid INTEGER, classoid INTEGER, objsubid INTEGER, description VARCHAR)",
	"pg_attrdef(oid INTEGER, adrelid INTEGER, adnum SMALLINT, adbin VARCHAR)",
	"pg_index(indexrelid INTEGER, indrelid INTEGER, indnatts SMALLINT, indnkeyatts SMALLINT, indisunique BOOLEAN, " +
		"indisprimary BOOLEAN, indisexclusion BOOLEAN, indimmediate BOOLEAN, indisclustered BOOLEAN, indisvalid BOOLEAN, " +
		"indisready BOOLEAN, indislive BOOLEAN, indisreplident BOOLEAN, indkey SMALLINT[], indexprs VARCHAR, indpred VARCHAR)",
	"pg_constraint(oid INTEGER, conname VARCHAR, connamespace INTEGER, contype VARCHAR, condeferrable BOOLEAN, " +
		"condeferred BOOLEAN, convalidated BOOLEAN, conrelid INTEGER, contypid INTEGER, conindid INTEGER, conparentid INTEGER, " +
		"confrelid INTEGER, confupdtype VARCHAR, confdeltype VARCHAR, confmatchtype VARCHAR, conislocal BOOLEAN, " +
		"coninhcount INTEGER, connoinherit BOOLEAN, conkey SMALLINT[], confkey SMALLINT[], conbin VARCHAR)",
	"pg_inherits(inhrelid INTEGER, inhparent INTEGER, inhseqno INTEGER, inhdetachpending BOOLEAN)",
	"pg_proc(oid INTEGER, proname VARCHAR, pronamespace INTEGER, proowner INTEGER, prokind VARCHAR, prorettype INTEGER, " +
		"pronargs SMALLINT, proargtypes VARCHAR, prosrc VARCHAR)",
	"pg_trigger(oid INTEGER, tgrelid INTEGER, tgname VARCHAR, tgenabled VARCHAR, tgisinternal BOOLEAN)",
	"pg_extension(oid INTEGER, extname VARCHAR, extowner INTEGER, extnamespace INTEGER, extrelocatable BOOLEAN, extversion VARCHAR)",
	"pg_enum(oid INTEGER, enumtypid INTEGER, enumsortorder REAL, enumlabel VARCHAR)",
	"pg_views(schemaname VARCHAR, viewname VARCHAR, viewowner VARCHAR, definition VARCHAR)",
	"pg_matviews(schemaname VARCHAR, matviewname VARCHAR, matviewowner VARCHAR, definition VARCHAR)",
	"pg_tables(schemaname VARCHAR, tablename VARCHAR, tableowner VARCHAR, tablespace VARCHAR, hasindexes BOOLEAN, " +
		"hasrules BOOLEAN, hastriggers BOOLEAN, rowsecurity BOOLEAN)",
	"pg_database(oid INTEGER, datname VARCHAR, datdba INTEGER, encoding INTEGER, datcollate VARCHAR, datctype VARCHAR, " +
		"datistemplate BOOLEAN, datallowconn BOOLEAN, datconnlimit INTEGER, dattablespace INTEGER, datacl VARCHAR)",
	"pg_roles(oid INTEGER, rolname VARCHAR, rolsuper BOOLEAN, rolinherit BOOLEAN, rolcreaterole BOOLEAN, rolcreatedb BOOLEAN, " +
		"rolcanlogin BOOLEAN, rolreplication BOOLEAN, rolconnlimit INTEGER, rolvaliduntil TIMESTAMPTZ, rolbypassrls BOOLEAN, rolconfig VARCHAR[])",
	"pg_user(usename VARCHAR, usesysid INTEGER, usecreatedb BOOLEAN, usesuper BOOLEAN, userepl BOOLEAN, usebypassrls BOOLEAN, " +
		"valuntil TIMESTAMPTZ, useconfig VARCHAR[])",
	"pg_settings(name VARCHAR, setting VARCHAR, unit VARCHAR, category VARCHAR, short_desc VARCHAR, context VARCHAR, " +
		"vartype VARCHAR, source VARCHAR)",
	"pg_am(oid INTEGER, amname VARCHAR, amhandler VARCHAR, amtype VARCHAR)",
	"pg_tablespace(oid INTEGER, spcname VARCHAR, spcowner INTEGER, spcacl VARCHAR, spcoptions VARCHAR[])",
	"pg_collation(oid INTEGER, collname VARCHAR, collnamespace INTEGER, collowner INTEGER, collprovider VARCHAR, " +
		"collencoding INTEGER, collcollate VARCHAR, collctype VARCHAR)",
	"format_types(oid INTEGER, format VARCHAR)", // format_type's text, not Postgres's
}

// catalogMacros are Postgres's catalog functions, answered for the
// analyst's tables.
var catalogMacros = []string{
	"format_type(t, m) AS CASE WHEN t = 1700 AND m >= 4 THEN 'numeric(' || ((m - 4) >> 16) || ',' || ((m - 4) & 65535) || ')' " +
		"ELSE (SELECT format FROM " + catalogDB + ".main.format_types WHERE oid = t) END",
	"pg_get_userbyid(r) AS 'flatfiler'",
	"pg_table_is_visible(r) AS true",
	"pg_type_is_visible(r) AS true",
	"pg_get_expr(e, r) AS NULL::VARCHAR",
	"pg_get_indexdef(i) AS NULL::VARCHAR",
	"pg_get_constraintdef(c) AS NULL::VARCHAR",
	"pg_get_viewdef(v) AS NULL::VARCHAR",
	"obj_description(o, c) AS NULL::VARCHAR",
	"col_description(r, n) AS NULL::VARCHAR",
	"shobj_description(o, c) AS NULL::VARCHAR",
	"current_schemas(implicit) AS CASE WHEN implicit THEN ['pg_catalog', 'public'] ELSE ['public'] END",
	"current_schema() AS 'public'",
	"has_table_privilege(t, p) AS true",
	"has_schema_privilege(s, p) AS true",
	"has_database_privilege(d, p) AS true",
	"pg_encoding_to_char(e) AS 'UTF8'",
	"pg_relation_size(r) AS 0::BIGINT",
	"pg_total_relation_size(r) AS 0::BIGINT",
	"version() AS 'PostgreSQL 16.0 (flatfiler, DuckDB)'",
	"current_setting(n) AS (SELECT setting FROM " + catalogDB + ".main.pg_settings WHERE name = lower(n))",
	"regclass(x) AS coalesce((SELECT oid FROM " + catalogDB + ".main.pg_class WHERE relname = split_part(x::VARCHAR, '.', -1)), " +
		"CASE split_part(x::VARCHAR, '.', -1) WHEN 'pg_class' THEN 1259 WHEN 'pg_type' THEN 1247 WHEN 'pg_proc' THEN 1255 " +
		"WHEN 'pg_namespace' THEN 2615 WHEN 'pg_attribute' THEN 1249 WHEN 'pg_constraint' THEN 2606 WHEN 'pg_database' THEN 1262 END, " +
		"TRY_CAST(x AS INTEGER))",
	"regtype(x) AS coalesce((SELECT oid FROM " + catalogDB + ".main.pg_type WHERE typname = x::VARCHAR), TRY_CAST(x AS INTEGER))",
	"regnamespace(x) AS coalesce((SELECT oid FROM " + catalogDB + ".main.pg_namespace WHERE nspname = x::VARCHAR), TRY_CAST(x AS INTEGER))",
	"regproc(x) AS TRY_CAST(x AS INTEGER)",
	"oid(x) AS TRY_CAST(x AS BIGINT)",
}

// catalogMu orders logins building the catalog. It is built in the
// warehouse's database of the moment: after a reopen (warehouse.Store) the
// attachment is gone, and the next login makes it again.
var catalogMu sync.Mutex

// ensureCatalog attaches the catalog database if the warehouse's open
// database lacks it.
func ensureCatalog(ctx context.Context, store *warehouse.Store, sess *warehouse.AnalystSession) error {
	catalogMu.Lock()
	defer catalogMu.Unlock()
	db := store.DB()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", catalogDB).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	var stmts []string
	for _, t := range catalogTables {
		stmts = append(stmts, "CREATE TABLE "+catalogDB+".main."+t)
	}
	for _, m := range catalogMacros {
		stmts = append(stmts, "CREATE MACRO "+catalogDB+".main."+m)
	}
	insert := func(table string, rows ...string) {
		if len(rows) > 0 {
			stmts = append(stmts, "INSERT INTO "+catalogDB+".main."+table+" VALUES "+strings.Join(rows, ", "))
		}
	}
	insert("pg_namespace", fmt.Sprintf("(%d, 'pg_catalog', %d, NULL)", pgCatalogNS, ownerOID),
		fmt.Sprintf("(%d, 'public', %d, NULL)", publicNS, ownerOID), fmt.Sprintf("(%d, 'information_schema', %d, NULL)", infoSchemaNS, ownerOID))
	var types, formats []string
	for _, t := range pgTypes {
		types = append(types, fmt.Sprintf("(%[1]d, %[2]s, %[3]d, %[4]d, %[5]d, %[6]t, 'b', %[7]s, false, true, ',', 0, 0, 0, %[2]s, %[2]s, %[2]s, %[2]s, 'i', 'p', false, 0, -1, 0, 0, NULL, NULL)",
			t.oid, quoteLiteral(t.name), pgCatalogNS, ownerOID, t.length, t.byValue, quoteLiteral(t.category)))
		formats = append(formats, fmt.Sprintf("(%d, %s)", t.oid, quoteLiteral(t.format)))
	}
	insert("pg_type", types...)
	insert("format_types", formats...)
	var classes, attrs, tables, isTables, isColumns []string
	for i, table := range warehouse.AnalystTables {
		st, err := sess.Prepare(ctx, "SELECT * FROM "+table)
		if err != nil {
			return fmt.Errorf("the catalog of %s: %w", table, err)
		}
		oid := firstOID + i
		classes = append(classes, fmt.Sprintf("(%[1]d, %[2]s, %[3]d, 0, 0, %[4]d, 2, %[1]d, 0, 0, -1, 0, 0, false, false, 'p', 'r', %[5]d, 0, "+
			"false, false, false, false, false, true, 'd', false, 0, false, NULL, NULL, NULL)", oid, quoteLiteral(table), publicNS, ownerOID, len(st.Columns)))
		tables = append(tables, fmt.Sprintf("('public', %s, 'flatfiler', NULL, false, false, false, false)", quoteLiteral(table)))
		isTables = append(isTables, fmt.Sprintf("(%s, 'public', %s, 'BASE TABLE')", quoteLiteral(Database), quoteLiteral(table)))
		for j, c := range st.Columns {
			typ := pgTypeOf(oidOf(c.Kind))
			attrs = append(attrs, fmt.Sprintf("(%d, %s, %d, -1, %d, %d, 0, -1, %d, false, 'i', 'p', '', false, false, false, '', '', false, true, 0, 0, NULL, NULL, NULL)",
				oid, quoteLiteral(c.Name), typ.oid, typ.length, j+1, typeModifier(c)))
			precision, scale := "NULL", "NULL"
			if c.Kind == warehouse.Numeric && c.Precision > 0 {
				precision, scale = fmt.Sprint(c.Precision), fmt.Sprint(c.Scale)
			}
			isColumns = append(isColumns, fmt.Sprintf("(%s, 'public', %s, %s, %d, NULL, 'YES', %s, %s, %s, %s)",
				quoteLiteral(Database), quoteLiteral(table), quoteLiteral(c.Name), j+1, quoteLiteral(typeText(c)), precision, scale, quoteLiteral(typ.name)))
		}
	}
	insert("pg_class", classes...)
	insert("pg_attribute", attrs...)
	insert("pg_tables", tables...)
	insert("pg_database", fmt.Sprintf("(%d, %s, %d, 6, 'C', 'C', false, true, -1, 1663, NULL)", databaseOID, quoteLiteral(Database), ownerOID))
	insert("pg_roles", fmt.Sprintf("(%d, 'flatfiler', false, true, false, false, true, false, -1, NULL, false, NULL)", ownerOID))
	insert("pg_user", fmt.Sprintf("('flatfiler', %d, false, false, false, false, NULL, NULL)", ownerOID))
	insert("pg_am", "(2, 'heap', 'heap_tableam_handler', 't')")
	insert("pg_tablespace", fmt.Sprintf("(1663, 'pg_default', %d, NULL, NULL)", ownerOID))
	insert("pg_collation", fmt.Sprintf("(100, 'default', %d, %d, 'd', -1, NULL, NULL)", pgCatalogNS, ownerOID))
	var settings []string
	for _, name := range slices.Sorted(maps.Keys(shown)) {
		settings = append(settings, fmt.Sprintf("(%s, %s, NULL, NULL, NULL, 'user', 'string', 'default')", quoteLiteral(name), quoteLiteral(shown[name])))
	}
	insert("pg_settings", settings...)
	stmts = append(stmts,
		"CREATE TABLE "+catalogDB+".main.information_schema_tables(table_catalog VARCHAR, table_schema VARCHAR, table_name VARCHAR, table_type VARCHAR)",
		"CREATE TABLE "+catalogDB+".main.information_schema_columns(table_catalog VARCHAR, table_schema VARCHAR, table_name VARCHAR, "+
			"column_name VARCHAR, ordinal_position INTEGER, column_default VARCHAR, is_nullable VARCHAR, data_type VARCHAR, "+
			"numeric_precision INTEGER, numeric_scale INTEGER, udt_name VARCHAR)",
		"CREATE TABLE "+catalogDB+".main.information_schema_schemata(catalog_name VARCHAR, schema_name VARCHAR, schema_owner VARCHAR)",
		"CREATE TABLE "+catalogDB+".main.information_schema_views(table_catalog VARCHAR, table_schema VARCHAR, table_name VARCHAR, view_definition VARCHAR)")
	insert("information_schema_tables", isTables...)
	insert("information_schema_columns", isColumns...)
	insert("information_schema_schemata", fmt.Sprintf("(%s, 'public', 'flatfiler')", quoteLiteral(Database)))

	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "ATTACH ':memory:' AS "+catalogDB); err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			conn.ExecContext(ctx, "DETACH "+catalogDB)
			return fmt.Errorf("the endpoint's catalog: %s: %w", s, err)
		}
	}
	return nil
}

// pgTypeOf is the type of an oid the endpoint sends; text for another.
func pgTypeOf(oid uint32) pgType {
	for _, t := range pgTypes {
		if t.oid == oid {
			return t
		}
	}
	return pgTypeOf(25)
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
