package pipeline

import (
	"context"
	"sort"
	"strings"
	"testing"
)

// A combined file of one user, one account with one balance and property,
// and one transaction; cases below break one field of it.
const constraintDoc = `<Users><User><Details><PartnerCustomerId>U1</PartnerCustomerId><ZipCode>06000</ZipCode></Details>
<Account><Details><PartnerCustomerId>U1</PartnerCustomerId><AccountId>A1</AccountId><AccountFiName>FI</AccountFiName><AccountType>checking</AccountType>
<AccountBalances><AccountBalance><BalanceType>Current</BalanceType><BalanceAmount>1.00</BalanceAmount><CurrencyCode>USD</CurrencyCode></AccountBalance></AccountBalances>
<Properties><Property><PropertyType>PurchasesApr</PropertyType><PropertyValue>12.5</PropertyValue></Property></Properties></Details>
<Transaction><TransactionId>T1</TransactionId><AccountId>A1</AccountId><TransactionType>Debit</TransactionType><PostedDate>2016-07-07</PostedDate><Amount>-1.00</Amount><Memo>COFFEE</Memo></Transaction>
</Account></User></Users>`

// breaking is a way a file could leave a NOT NULL column empty.
type breaking struct {
	from, to string // replaced in constraintDoc
	field    string // the rejection must name it
}

// setByLoader marks columns no file field fills: the loader always does.
var setByLoader []breaking

// notNullSources is, for every NOT NULL column a load writes, how a file
// could leave it empty, each of which validation must refuse with the
// field; or setByLoader.
var notNullSources = map[string][]breaking{
	"users.partner_id":          setByLoader,
	"users.partner_customer_id": {{"<PartnerCustomerId>U1</PartnerCustomerId><ZipCode>", "<PartnerCustomerId> </PartnerCustomerId><ZipCode>", "PartnerCustomerId"}},
	"users.updated_at":          setByLoader,

	"accounts.partner_id":          setByLoader,
	"accounts.partner_customer_id": {{"<PartnerCustomerId>U1</PartnerCustomerId><AccountId>", "<AccountId>", "PartnerCustomerId"}},
	"accounts.account_id":          {{"<AccountId>A1</AccountId><AccountFiName>", "<AccountFiName>", "AccountId"}},
	"accounts.fi_name":             {{"<AccountFiName>FI</AccountFiName>", "", "AccountFiName"}},
	"accounts.account_type":        {{"<AccountType>checking</AccountType>", "", "AccountType"}, {"checking", "chequing", "AccountType"}},
	"accounts.account_class":       {{"<AccountType>checking</AccountType>", "<AccountType>crypto</AccountType>", "AccountType"}},
	"accounts.state":               setByLoader,
	"accounts.updated_at":          setByLoader,

	"balances.partner_id":    setByLoader,
	"balances.account_id":    {{"<AccountId>A1</AccountId><AccountFiName>", "<AccountId/><AccountFiName>", "AccountId"}},
	"balances.balance_type":  {{"<BalanceType>Current</BalanceType>", "", "BalanceType"}},
	"balances.amount":        {{"<BalanceAmount>1.00</BalanceAmount>", "", "BalanceAmount"}, {"<BalanceAmount>1.00</BalanceAmount>", "<BalanceAmount>1e3</BalanceAmount>", "BalanceAmount"}},
	"balances.currency_code": {{"<CurrencyCode>USD</CurrencyCode>", "", "CurrencyCode"}},
	"balances.as_of":         setByLoader,
	"balances.updated_at":    setByLoader,

	"account_properties.partner_id":     setByLoader,
	"account_properties.account_id":     {{"<AccountId>A1</AccountId><AccountFiName>", "<AccountFiName>", "AccountId"}},
	"account_properties.property_type":  {{"<PropertyType>PurchasesApr</PropertyType>", "", "PropertyType"}},
	"account_properties.property_value": {{"<PropertyValue>12.5</PropertyValue>", "<PropertyValue>  </PropertyValue>", "PropertyValue"}},
	"account_properties.updated_at":     setByLoader,

	"transactions.partner_id":       setByLoader,
	"transactions.account_id":       {{"<TransactionId>T1</TransactionId><AccountId>A1</AccountId>", "<TransactionId>T1</TransactionId>", "AccountId"}},
	"transactions.transaction_id":   {{"<TransactionId>T1</TransactionId>", "", "TransactionId"}},
	"transactions.transaction_type": {{"<TransactionType>Debit</TransactionType>", "", "TransactionType"}},
	"transactions.posted_at": {
		{"<PostedDate>2016-07-07</PostedDate>", "", "PostedDate"},
		// The zero time is what the loader stages as NULL.
		{"2016-07-07", "0001-01-01", "PostedDate"},
		{"2016-07-07", "0001-01-01T00:00:00Z", "PostedDate"},
		{"2016-07-07", "0000-12-31T23:00:00-01:00", "PostedDate"},
	},
	"transactions.posted_on":     {{"2016-07-07", "0001-01-01T00:00:00+05:00", "PostedDate"}},
	"transactions.amount":        {{"<Amount>-1.00</Amount>", "", "Amount"}, {"<Amount>-1.00</Amount>", "<Amount>-99999999999999999.00</Amount>", "Amount"}},
	"transactions.memo":          {{"<Memo>COFFEE</Memo>", "", "Memo"}, {"<Memo>COFFEE</Memo>", "<Memo>   </Memo>", "Memo"}},
	"transactions.original_name": {{"<Memo>COFFEE</Memo>", "", "Memo"}},
	"transactions.updated_at":    setByLoader,

	"enrichments.enrichment_id": setByLoader,

	"ingests.partner_id": setByLoader, "ingests.file": setByLoader, "ingests.file_type": setByLoader,
	"ingests.as_of": setByLoader, "ingests.started_at": setByLoader, "ingests.finished_at": setByLoader,
	"ingests.status": setByLoader, "ingests.bytes": setByLoader, "ingests.report": setByLoader,
}

// TestEveryNotNullColumnHasAValidationRule reads the NOT NULL columns of
// the tables a load writes from the warehouse's own schema, so a column
// added later cannot slip past: each must be filled by the loader, or be
// fed by a field whose every empty or impossible value is refused per
// record, with the field and line, before DuckDB could raise a constraint
// error that would fail the whole file without saying where.
func TestEveryNotNullColumnHasAValidationRule(t *testing.T) {
	h := newHarness(t)
	rows, err := h.store.DB().QueryContext(context.Background(), `SELECT table_name || '.' || column_name FROM duckdb_columns()
		WHERE database_name = current_database() AND schema_name = 'main' AND NOT is_nullable
		  AND table_name IN ('users', 'accounts', 'balances', 'account_properties', 'transactions', 'enrichments', 'ingests')`)
	if err != nil {
		t.Fatal(err)
	}
	var columns []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		columns = append(columns, c)
	}
	rows.Close()
	sort.Strings(columns)
	if len(columns) < 30 {
		t.Fatalf("only %d NOT NULL columns found: the schema query is wrong", len(columns))
	}
	for _, column := range columns {
		ways, known := notNullSources[column]
		if !known {
			t.Errorf("%s is NOT NULL, and nothing says how a file fills it: add a validation rule and a case here", column)
			continue
		}
		for _, way := range ways {
			doc := strings.Replace(constraintDoc, way.from, way.to, 1)
			if doc == constraintDoc {
				t.Fatalf("%s: %q is not in the document", column, way.from)
			}
			rep := h.ingestString(doc, Options{})
			found := false
			for _, r := range rep.Errors {
				found = found || r.Field == way.field && r.Line > 0
			}
			if !rep.Applied || rep.ErrorCount == 0 || !found {
				t.Errorf("%s, %q -> %q: want a rejection naming %s with its line; report %s", column, way.from, way.to, way.field, reportJSON(rep))
			}
		}
	}
	for column := range notNullSources {
		if !contains(columns, column) {
			t.Errorf("%s is listed here but is not a NOT NULL column of the schema", column)
		}
	}
}

func contains(list []string, s string) bool {
	i := sort.SearchStrings(list, s)
	return i < len(list) && list[i] == s
}
