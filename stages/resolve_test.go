package stages

import (
	"reflect"
	"testing"
)

func TestResolve(t *testing.T) {
	u := func(seq Seq, id string, a Action) User { return User{Seq: seq, PartnerCustomerID: id, Action: a} }
	acct := func(seq Seq, id, owner string, a Action) Account {
		return Account{Seq: seq, AccountID: id, PartnerCustomerID: owner, Action: a}
	}
	tx := func(seq Seq, account, id string, a Action) Transaction {
		return Transaction{Seq: seq, AccountID: account, TransactionID: id, Action: a}
	}
	tests := []struct {
		name  string
		batch Batch
		want  Resolved
	}{
		{
			name:  "last occurrence wins",
			batch: Batch{Users: []User{u(0, "1", Upsert), u(1, "2", Upsert), u(2, "1", Upsert)}},
			want:  Resolved{Users: []int{1, 2}},
		},
		{
			name:  "delete then re-create: the cascade still happened",
			batch: Batch{Users: []User{u(0, "1", Delete), u(5, "1", Upsert)}},
			want:  Resolved{Users: []int{1}, UserDeletes: []KeyDelete{{"1", 0}}},
		},
		{
			name: "a user delete takes what came before it",
			batch: Batch{
				Users:        []User{u(0, "1", Upsert), u(3, "1", Delete)},
				Accounts:     []Account{acct(1, "A", "1", Upsert), acct(4, "B", "1", Upsert)},
				Transactions: []Transaction{tx(2, "A", "t1", Upsert), tx(5, "B", "t2", Upsert), tx(6, "S", "t3", Upsert)},
			},
			want: Resolved{
				UserDeletes: []KeyDelete{{"1", 3}}, Accounts: []int{1},
				Transactions: []int{1, 2}, OwnerKnown: []bool{true, false},
			},
		},
		{
			name: "an account delete takes its earlier transactions",
			batch: Batch{
				Accounts:     []Account{acct(1, "A", "1", Delete)},
				Transactions: []Transaction{tx(0, "A", "t1", Upsert), tx(2, "A", "t2", Upsert)},
			},
			want: Resolved{AccountDeletes: []KeyDelete{{"A", 1}}, Transactions: []int{1}, OwnerKnown: []bool{true}},
		},
		{
			name:  "transaction deletes",
			batch: Batch{Transactions: []Transaction{tx(0, "A", "t1", Upsert), tx(1, "A", "t1", Delete), tx(2, "A", "t2", Delete), tx(3, "A", "t2", Upsert)}},
			want:  Resolved{TransactionDeletes: []TransactionDelete{{TransactionKey{"A", "t1"}, 1}}, Transactions: []int{3}, OwnerKnown: []bool{false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Resolve(&tt.batch)
			got.Batch = nil
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}
