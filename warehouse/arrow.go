package warehouse

import (
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/flatfiler/flatfiler/stages"
	"github.com/flatfiler/flatfiler/stages/enrich"
)

// Staging tables are built as Arrow record batches and handed to DuckDB
// without copying row by row (the C data interface).

var (
	tsUTC  = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	amount = &arrow.Decimal128Type{Precision: 18, Scale: 2}
)

func field(name string, t arrow.DataType) arrow.Field {
	return arrow.Field{Name: name, Type: t, Nullable: true}
}

var (
	str = arrow.BinaryTypes.String
	i64 = arrow.PrimitiveTypes.Int64
	i32 = arrow.PrimitiveTypes.Int32
	dt  = arrow.FixedWidthTypes.Date32
	bl  = arrow.FixedWidthTypes.Boolean
)

// Every staged row carries its seq (file order) and, for records that can be
// deleted, its action: the load resolves actions set-based from them.
var (
	usersSchema = arrow.NewSchema([]arrow.Field{
		field("seq", i64), field("line", i32), field("action", str),
		field("partner_customer_id", str), field("first_name", str), field("last_name", str),
		field("email", str), field("zip_code", str), field("user_experience", str),
	}, nil)
	accountsSchema = arrow.NewSchema([]arrow.Field{
		field("seq", i64), field("line", i32), field("action", str),
		field("partner_customer_id", str), field("account_id", str), field("account_number", str),
		field("fi_name", str), field("nickname", str), field("account_type", str),
		field("account_class", str), field("account_experience", str), field("needs_user", bl),
	}, nil)
	balancesSchema = arrow.NewSchema([]arrow.Field{
		field("account_seq", i64), field("account_id", str), field("balance_type", str),
		field("amount", amount), field("currency_code", str),
	}, nil)
	propertiesSchema = arrow.NewSchema([]arrow.Field{
		field("account_seq", i64), field("account_id", str), field("property_type", str), field("property_value", str),
	}, nil)
	transactionsSchema = arrow.NewSchema([]arrow.Field{
		field("seq", i64), field("line", i32), field("action", str),
		field("account_id", str), field("transaction_id", str), field("transaction_type", str),
		field("posted_at", tsUTC), field("posted_on", dt), field("originated_at", tsUTC), field("originated_on", dt),
		field("amount", amount), field("memo", str), field("original_name", str), field("check_number", str),
		field("enrichment_id", i32), field("hidden", bl), field("user_nickname", str), field("needs_account", bl),
	}, nil)
	enrichmentsSchema = arrow.NewSchema([]arrow.Field{
		field("id", i32), field("nickname", str), field("tag", str), field("tag_reason", str), field("merchant_key", str),
	}, nil)
	keysSchema = arrow.NewSchema([]arrow.Field{
		field("account_id", str), field("transaction_id", str),
	}, nil)
)

var actionNames = [...]string{stages.Upsert: "upsert", stages.Delete: "delete"}

// columns appends Go values to the fields of a record builder in order.
type columns struct {
	b *array.RecordBuilder
	i int
}

func (c *columns) next() array.Builder {
	f := c.b.Field(c.i)
	c.i++
	return f
}

func (c *columns) row() { c.i = 0 }

func (c *columns) str(s string) { c.next().(*array.StringBuilder).Append(s) }

// opt appends s, or NULL when empty: optional fields the partner left out.
func (c *columns) opt(s string) {
	b := c.next().(*array.StringBuilder)
	if s == "" {
		b.AppendNull()
		return
	}
	b.Append(s)
}

func (c *columns) action(a stages.Action) { c.str(actionNames[a]) }
func (c *columns) i64(v int64)            { c.next().(*array.Int64Builder).Append(v) }
func (c *columns) i32(v int)              { c.next().(*array.Int32Builder).Append(int32(v)) }
func (c *columns) bool(v bool)            { c.next().(*array.BooleanBuilder).Append(v) }
func (c *columns) cents(v int64)          { c.next().(*array.Decimal128Builder).Append(decimal128.FromI64(v)) }

// optID appends v, or NULL when zero: a transaction enrichment left alone.
func (c *columns) optID(v uint32) {
	b := c.next().(*array.Int32Builder)
	if v == 0 {
		b.AppendNull()
		return
	}
	b.Append(int32(v))
}

func (c *columns) ts(t time.Time) {
	b := c.next().(*array.TimestampBuilder)
	if t.IsZero() {
		b.AppendNull()
		return
	}
	b.Append(arrow.Timestamp(t.UnixMicro()))
}

func (c *columns) date(t time.Time) {
	b := c.next().(*array.Date32Builder)
	if t.IsZero() {
		b.AppendNull()
		return
	}
	b.Append(arrow.Date32FromTime(t))
}

// build fills a record batch of schema with one row per call of fill.
func build(schema *arrow.Schema, n int, fill func(c *columns, i int)) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Reserve(n)
	c := &columns{b: b}
	for i := 0; i < n; i++ {
		c.row()
		fill(c, i)
	}
	return b.NewRecordBatch()
}

func usersRecord(rows []stages.User) arrow.RecordBatch {
	return build(usersSchema, len(rows), func(c *columns, i int) {
		u := &rows[i]
		c.i64(u.Seq)
		c.i32(u.Line)
		c.action(u.Action)
		c.str(u.PartnerCustomerID)
		c.opt(u.FirstName)
		c.opt(u.LastName)
		c.opt(u.Email)
		c.opt(u.ZipCode)
		c.opt(u.UserExperience)
	})
}

func accountsRecord(rows []stages.Account) arrow.RecordBatch {
	return build(accountsSchema, len(rows), func(c *columns, i int) {
		a := &rows[i]
		c.i64(a.Seq)
		c.i32(a.Line)
		c.action(a.Action)
		c.opt(a.PartnerCustomerID)
		c.str(a.AccountID)
		c.opt(a.AccountNumber)
		c.opt(a.FiName)
		c.opt(a.Nickname)
		c.opt(a.AccountType)
		c.opt(a.AccountClass)
		c.opt(a.Experience)
		c.bool(a.NeedsUser)
	})
}

// childRecord flattens the balances or properties of accounts: each row
// starts with its account's seq and id, then fill adds its own columns.
func childRecord[T any](schema *arrow.Schema, accounts []stages.Account,
	children func(*stages.Account) []T, fill func(c *columns, child *T)) arrow.RecordBatch {
	type ref struct {
		account *stages.Account
		child   *T
	}
	var refs []ref
	for i := range accounts {
		a := &accounts[i]
		kids := children(a)
		for j := range kids {
			refs = append(refs, ref{a, &kids[j]})
		}
	}
	return build(schema, len(refs), func(c *columns, i int) {
		c.i64(refs[i].account.Seq)
		c.str(refs[i].account.AccountID)
		fill(c, refs[i].child)
	})
}

func balancesRecord(rows []stages.Account) arrow.RecordBatch {
	return childRecord(balancesSchema, rows,
		func(a *stages.Account) []stages.Balance { return a.Balances },
		func(c *columns, b *stages.Balance) {
			c.str(b.BalanceType)
			c.cents(b.Cents)
			c.str(b.CurrencyCode)
		})
}

func propertiesRecord(rows []stages.Account) arrow.RecordBatch {
	return childRecord(propertiesSchema, rows,
		func(a *stages.Account) []stages.Property { return a.Properties },
		func(c *columns, p *stages.Property) {
			c.str(p.Type)
			c.str(p.Value)
		})
}

func keysRecord(keys [][2]string) arrow.RecordBatch {
	return build(keysSchema, len(keys), func(c *columns, i int) {
		c.str(keys[i][0])
		c.str(keys[i][1])
	})
}

func transactionsRecord(rows []stages.Transaction) arrow.RecordBatch {
	return build(transactionsSchema, len(rows), func(c *columns, i int) {
		t := &rows[i]
		c.i64(t.Seq)
		c.i32(t.Line)
		c.action(t.Action)
		c.str(t.AccountID)
		c.str(t.TransactionID)
		c.opt(t.TransactionType)
		c.ts(t.PostedAt)
		c.date(t.PostedOn)
		c.ts(t.OriginatedAt)
		c.date(t.OriginatedOn)
		c.cents(t.Cents)
		c.str(t.Memo) // transactions.memo is NOT NULL; a batch may leave it out
		c.str(t.OriginalName)
		c.opt(t.CheckNumber)
		c.optID(t.EnrichmentID)
		c.bool(t.Hidden)
		c.opt(t.UserNickname)
		c.bool(t.NeedsAccount)
	})
}

func enrichmentsRecord(rows []*enrich.Result) arrow.RecordBatch {
	return build(enrichmentsSchema, len(rows), func(c *columns, i int) {
		e := rows[i]
		c.i32(int(e.ID))
		c.opt(e.Nickname)
		c.opt(e.Tag)
		c.opt(e.Reason)
		c.opt(e.MerchantKey)
	})
}
