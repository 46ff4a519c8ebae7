package stages

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/parse"
)

func validate(t *testing.T, v Validator, doc string) Validated {
	t.Helper()
	recs, _, err := parse.Collect(context.Background(), strings.NewReader(doc), parse.Options{})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return v.Validate(recs)
}

const goodUser = `<PartnerCustomerId>42</PartnerCustomerId><FirstName>ANA</FirstName><ZipCode>06000</ZipCode>`
const goodBalances = `<AccountBalances><AccountBalance><BalanceType>Current</BalanceType><BalanceAmount>1.00</BalanceAmount><CurrencyCode>USD</CurrencyCode></AccountBalance></AccountBalances>`

func userDoc(details string) string {
	return "<Users><User><Details>" + details + "</Details></User></Users>"
}

func accountDoc(details string) string {
	return "<Accounts><Account><Details><PartnerCustomerId>42</PartnerCustomerId><AccountId>A1</AccountId>" + details + "</Details></Account></Accounts>"
}

func txnDoc(fields string) string {
	return "<Transactions><Transaction><TransactionId>T1</TransactionId><AccountId>A1</AccountId>" + fields + "</Transaction></Transactions>"
}

const goodTxn = `<TransactionType>Debit</TransactionType><PostedDate>2016-07-07</PostedDate><Amount>-10.00</Amount><Memo>DUNKIN</Memo>`

// One case per rule of the spec's tag tables: the rejection names the field.
func TestValidationRules(t *testing.T) {
	long := strings.Repeat("x", 256)
	tests := []struct {
		name    string
		doc     string
		context string
		field   string
		message string // substring; "" means the record is accepted
	}{
		{"user ok", userDoc(goodUser), "user", "", ""},
		{"user action", userDoc(`<Action>Remove</Action>` + goodUser), "user", "Action", "not one of New, Update, Delete"},
		{"user id required", userDoc(`<ZipCode>06000</ZipCode>`), "user", "PartnerCustomerId", "required"},
		{"user id blank is missing", userDoc(`<PartnerCustomerId>   </PartnerCustomerId><ZipCode>06000</ZipCode>`), "user", "PartnerCustomerId", "required"},
		{"user id length", userDoc(`<PartnerCustomerId>` + long + `</PartnerCustomerId><ZipCode>06000</ZipCode>`), "user", "PartnerCustomerId", "limit is 255"},
		{"first name length", userDoc(goodUser + `<FirstName>` + long + `</FirstName>`), "user", "FirstName", "limit is 255"},
		{"last name length", userDoc(goodUser + `<LastName>` + long + `</LastName>`), "user", "LastName", "limit is 255"},
		{"email format", userDoc(goodUser + `<Email>not-an-email</Email>`), "user", "Email", "not a valid email"},
		{"zip required", userDoc(`<PartnerCustomerId>42</PartnerCustomerId>`), "user", "ZipCode", "required"},
		{"zip format", userDoc(`<PartnerCustomerId>42</PartnerCustomerId><ZipCode>ABCDE</ZipCode>`), "user", "ZipCode", "not a US ZIP"},
		{"zip padded is fine", userDoc(`<PartnerCustomerId>42</PartnerCustomerId><ZipCode>20171     </ZipCode>`), "user", "", ""},
		{"user experience length", userDoc(goodUser + `<UserExperience>` + long + `</UserExperience>`), "user", "UserExperience", "limit is 255"},
		{"delete needs only the key", userDoc(`<Action>DELETE</Action><PartnerCustomerId>42</PartnerCustomerId>`), "user", "", ""},

		{"account ok", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>SAVINGS</AccountType>` + goodBalances), "account", "", ""},
		{"account id required", strings.Replace(accountDoc(`<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>`+goodBalances), "<AccountId>A1</AccountId>", "", 1), "account", "AccountId", "required"},
		{"account user required", strings.Replace(accountDoc(`<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>`+goodBalances), "<PartnerCustomerId>42</PartnerCustomerId>", "", 1), "account", "PartnerCustomerId", "required"},
		{"fi name required", accountDoc(`<AccountType>savings</AccountType>` + goodBalances), "account", "AccountFiName", "required"},
		{"account type required", accountDoc(`<AccountFiName>X</AccountFiName><AccountType></AccountType>` + goodBalances), "account", "AccountType", "required"},
		{"account type closed list", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>crypto</AccountType>` + goodBalances), "account", "AccountType", "closed list"},
		{"balances required", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>`), "account", "AccountBalances", "required"},
		{"deposit needs current", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>checking</AccountType>` + strings.Replace(goodBalances, "Current", "Available", 1)), "account", "BalanceType", "needs a Current balance"},
		{"credit needs outstanding", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>cards</AccountType>` + strings.Replace(goodBalances, "Current", "CurrentLimit", 1)), "account", "BalanceType", "needs a Outstanding balance"},
		{"balance type for class", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>cards</AccountType>` + goodBalances), "account", "BalanceType", "not valid for a credit account"},
		{"balance amount two decimals", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + strings.Replace(goodBalances, "1.00", "1.5", 1)), "account", "BalanceAmount", "exactly two decimals"},
		{"negative balance ok", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + strings.Replace(goodBalances, "1.00", "-1110.56", 1)), "account", "", ""},
		{"currency closed list", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + strings.Replace(goodBalances, "USD", "EUR", 1)), "account", "CurrencyCode", "not USD or CAD"},
		{"duplicate balance type", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + strings.Replace(goodBalances, "</AccountBalances>", "<AccountBalance><BalanceType>current</BalanceType><BalanceAmount>2.00</BalanceAmount><CurrencyCode>USD</CurrencyCode></AccountBalance></AccountBalances>", 1)), "account", "BalanceType", "more than once"},
		{"full card number", accountDoc(`<AccountNumber>4111 1111 1111 1111</AccountNumber><AccountFiName>X</AccountFiName><AccountType>cards</AccountType>` + strings.Replace(goodBalances, "Current", "Outstanding", 1)), "account", "AccountNumber", "full card number"},
		{"masked card number ok", accountDoc(`<AccountNumber>XXXX1111</AccountNumber><AccountFiName>X</AccountFiName><AccountType>cards</AccountType>` + strings.Replace(goodBalances, "Current", "Outstanding", 1)), "account", "", ""},
		{"nickname length", accountDoc(`<AccountFiName>X</AccountFiName><AccountNickname>` + long + `</AccountNickname><AccountType>savings</AccountType>` + goodBalances), "account", "AccountNickname", "limit is 255"},
		{"property value required", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + goodBalances + `<Properties><Property><PropertyType>PurchasesApr</PropertyType></Property></Properties>`), "account", "PropertyValue", "required"},
		{"property apr decimal", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + goodBalances + `<Properties><Property><PropertyType>PurchasesApr</PropertyType><PropertyValue>high</PropertyValue></Property></Properties>`), "account", "PropertyValue", "not a decimal"},

		{"transaction ok", txnDoc(goodTxn), "transaction", "", ""},
		{"transaction id required", strings.Replace(txnDoc(goodTxn), "<TransactionId>T1</TransactionId>", "", 1), "transaction", "TransactionId", "required"},
		{"transaction account required", strings.Replace(txnDoc(goodTxn), "<AccountId>A1</AccountId>", "", 1), "transaction", "AccountId", "required"},
		{"transaction type closed list", txnDoc(strings.Replace(goodTxn, "Debit", "Refund", 1)), "transaction", "TransactionType", "not Debit or Credit"},
		{"posted date required", txnDoc(strings.Replace(goodTxn, "<PostedDate>2016-07-07</PostedDate>", "", 1)), "transaction", "PostedDate", "required"},
		{"posted date format", txnDoc(strings.Replace(goodTxn, "2016-07-07", "07/07/2016", 1)), "transaction", "PostedDate", "YYYY-MM-DD"},
		{"posted date needs offset", txnDoc(strings.Replace(goodTxn, "2016-07-07", "2016-07-07T10:00:00", 1)), "transaction", "PostedDate", "offset"},
		{"posted date zero time", txnDoc(strings.Replace(goodTxn, "2016-07-07", "0001-01-01", 1)), "transaction", "PostedDate", "outside 1900-01-01 to 2199-12-31"},
		{"posted date year 0000", txnDoc(strings.Replace(goodTxn, "2016-07-07", "0000-06-01T00:00:00Z", 1)), "transaction", "PostedDate", "outside"},
		{"posted date year 9999", txnDoc(strings.Replace(goodTxn, "2016-07-07", "9999-12-31", 1)), "transaction", "PostedDate", "outside"},
		{"posted date offset +24:00", txnDoc(strings.Replace(goodTxn, "2016-07-07", "2016-07-07T10:00:00+24:00", 1)), "transaction", "PostedDate", "offset +24:00 is outside"},
		{"posted date offset -24:00", txnDoc(strings.Replace(goodTxn, "2016-07-07", "2016-07-07T10:00:00-24:00", 1)), "transaction", "PostedDate", "offset -24:00 is outside"},
		{"posted date offset +23:59 ok", txnDoc(strings.Replace(goodTxn, "2016-07-07", "2016-07-07T10:00:00+23:59", 1)), "transaction", "", ""},
		{"posted date first day ok", txnDoc(strings.Replace(goodTxn, "2016-07-07", "1900-01-01", 1)), "transaction", "", ""},
		{"origination date zero time", txnDoc(goodTxn + `<OriginationDate>0001-01-01T00:00:00Z</OriginationDate>`), "transaction", "OriginationDate", "outside"},
		{"payment due date out of range", accountDoc(`<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + goodBalances + `<Properties><Property><PropertyType>PaymentDueDate</PropertyType><PropertyValue>0001-01-01</PropertyValue></Property></Properties>`), "account", "PropertyValue", "PaymentDueDate \"0001-01-01\": the date is outside"},
		{"origination date format", txnDoc(goodTxn + `<OriginationDate>yesterday</OriginationDate>`), "transaction", "OriginationDate", "YYYY-MM-DD"},
		{"amount required", txnDoc(strings.Replace(goodTxn, "<Amount>-10.00</Amount>", "", 1)), "transaction", "Amount", "required"},
		{"amount two decimals", txnDoc(strings.Replace(goodTxn, "-10.00", "10", 1)), "transaction", "Amount", "exactly two decimals"},
		{"amount no thousands separator", txnDoc(strings.Replace(goodTxn, "-10.00", "1,000.00", 1)), "transaction", "Amount", "exactly two decimals"},
		{"negative credit", txnDoc(strings.Replace(goodTxn, "Debit", "Credit", 1)), "transaction", "Amount", "negative on a Credit"},
		{"memo required", txnDoc(strings.Replace(goodTxn, "DUNKIN", "     ", 1)), "transaction", "Memo", "required"},
		{"memo length", txnDoc(strings.Replace(goodTxn, "DUNKIN", long, 1)), "transaction", "Memo", "limit is 255"},
		{"check number length", txnDoc(goodTxn + `<CheckNumber>` + long + `</CheckNumber>`), "transaction", "CheckNumber", "limit is 255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := validate(t, Validator{}, tt.doc)
			count := out.Totals.Of(tt.context)
			if count.Total != 1 {
				t.Fatalf("%s total %d, want 1 (%+v)", tt.context, count.Total, out.Totals)
			}
			if tt.message == "" {
				if count.Error != 0 {
					t.Fatalf("rejected: %+v", out.Rejections)
				}
				return
			}
			if count.Error != 1 || len(out.Rejections) == 0 {
				t.Fatalf("accepted, want %s rejected on %s", tt.context, tt.field)
			}
			for _, r := range out.Rejections {
				if r.Field == tt.field && strings.Contains(r.Message, tt.message) && r.Context == tt.context && r.Line > 0 {
					return
				}
			}
			t.Errorf("rejections %+v, want field %s with %q", out.Rejections, tt.field, tt.message)
		})
	}
}

func TestValuesAreNormalized(t *testing.T) {
	out := validate(t, Validator{}, txnDoc(`<Action>new</Action><TransactionType>DEBIT</TransactionType>
<PostedDate>2009-03-19T23:40:50-04:00</PostedDate><OriginationDate>2009-03-19</OriginationDate>
<Amount>112.03</Amount><Memo>  DUNKINDONUTS*100094   </Memo><CheckNumber> 1021 </CheckNumber>`))
	if len(out.Batch.Transactions) != 1 {
		t.Fatalf("%+v", out.Rejections)
	}
	tx := out.Batch.Transactions[0]
	if tx.Cents != -11203 || tx.TransactionType != "debit" || tx.Action != Upsert {
		t.Errorf("amount %d type %s action %v", tx.Cents, tx.TransactionType, tx.Action)
	}
	if tx.Memo != "DUNKINDONUTS*100094" || tx.OriginalName != "  DUNKINDONUTS*100094   " || tx.CheckNumber != "1021" {
		t.Errorf("memo %q original %q check %q", tx.Memo, tx.OriginalName, tx.CheckNumber)
	}
	wantAt := time.Date(2009, 3, 20, 3, 40, 50, 0, time.UTC)
	if !tx.PostedAt.Equal(wantAt) || tx.PostedOn != time.Date(2009, 3, 19, 0, 0, 0, 0, time.UTC) {
		t.Errorf("posted at %v on %v: the date must be the one written, not the UTC one", tx.PostedAt, tx.PostedOn)
	}
}

func TestNesting(t *testing.T) {
	tests := []struct {
		name                string
		doc                 string
		typ                 parse.FileType
		users, accounts, tx Count
		skipped             int64
		message             string
	}{
		{
			name: "account of another user",
			doc: `<Users><User><Details>` + goodUser + `</Details><Account><Details><PartnerCustomerId>43</PartnerCustomerId><AccountId>A1</AccountId>
<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + goodBalances + `</Details></Account></User></Users>`,
			users: Count{1, 1, 0}, accounts: Count{1, 0, 1}, message: "does not match the enclosing user 42",
		},
		{
			name: "children of a rejected user",
			doc: `<Users><User><Details><PartnerCustomerId>42</PartnerCustomerId></Details><Account><Details><PartnerCustomerId>42</PartnerCustomerId><AccountId>A1</AccountId>
<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + goodBalances + `</Details>
<Transaction><TransactionId>T1</TransactionId><AccountId>A1</AccountId>` + goodTxn + `</Transaction></Account></User></Users>`,
			users: Count{1, 0, 1}, accounts: Count{1, 0, 1}, tx: Count{1, 0, 1}, message: "enclosing account A1 (line 1) was rejected",
		},
		{
			name: "transaction of another account",
			doc: `<Accounts><Account><Details><PartnerCustomerId>42</PartnerCustomerId><AccountId>A1</AccountId><AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + goodBalances + `</Details>
<Transaction><TransactionId>T1</TransactionId><AccountId>B2</AccountId>` + goodTxn + `</Transaction></Account></Accounts>`,
			accounts: Count{1, 1, 0}, tx: Count{1, 0, 1}, message: "does not match the enclosing account A1",
		},
		{
			name: "investment transactions are skipped",
			doc: `<Accounts><Account><Details><PartnerCustomerId>42</PartnerCustomerId><AccountId>A1</AccountId><AccountFiName>X</AccountFiName><AccountType>Investment</AccountType>` + goodBalances + `</Details>
<Transaction><TransactionId>T1</TransactionId><AccountId>A1</AccountId>` + goodTxn + `</Transaction></Account></Accounts>`,
			accounts: Count{1, 1, 0}, skipped: 1,
		},
		{
			name: "a type imports only its records",
			typ:  parse.Accounts,
			doc: `<Users><User><Details><PartnerCustomerId>42</PartnerCustomerId></Details><Account><Details><PartnerCustomerId>42</PartnerCustomerId><AccountId>A1</AccountId>
<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + goodBalances + `</Details>
<Transaction><TransactionId>T1</TransactionId><AccountId>A1</AccountId>` + goodTxn + `</Transaction></Account></User></Users>`,
			accounts: Count{1, 1, 0},
		},
		{
			name: "children of a deleted user go with it",
			doc: `<Users><User><Details><Action>Delete</Action><PartnerCustomerId>42</PartnerCustomerId></Details><Account><Details><PartnerCustomerId>42</PartnerCustomerId><AccountId>A1</AccountId>
<AccountFiName>X</AccountFiName><AccountType>savings</AccountType>` + goodBalances + `</Details></Account></User></Users>`,
			users: Count{1, 1, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := validate(t, Validator{Type: tt.typ}, tt.doc)
			if out.Totals.Users != tt.users || out.Totals.Accounts != tt.accounts || out.Totals.Transactions != tt.tx || out.Skipped != tt.skipped {
				t.Fatalf("totals %+v skipped %d, want users %+v accounts %+v transactions %+v skipped %d",
					out.Totals, out.Skipped, tt.users, tt.accounts, tt.tx, tt.skipped)
			}
			if tt.message != "" {
				found := false
				for _, r := range out.Rejections {
					found = found || strings.Contains(r.Message, tt.message)
				}
				if !found {
					t.Errorf("rejections %+v, want %q", out.Rejections, tt.message)
				}
			}
			if tt.typ == parse.Accounts && len(out.Batch.Accounts) == 1 && !out.Batch.Accounts[0].NeedsUser {
				t.Error("an account imported without its user must be checked against the warehouse")
			}
		})
	}
}
