# flatfiler: `make run` and `make test` are all a fresh machine needs.
GO      ?= go
TAGS    := duckdb_arrow
# The Arrow bridge of duckdb-go is compiled only with this tag.
GOTAGS  := -tags=$(TAGS)
BIN     := bin/flatfiler
DB      ?= data/warehouse.duckdb
SOURCES := $(shell find . -name '*.go' -not -path './bench/out/*') go.mod go.sum

.PHONY: build run test fuzz vet bench clean

build: $(BIN)

$(BIN): $(SOURCES)
	$(GO) build $(GOTAGS) -o $(BIN) ./cmd/flatfiler

# Until `serve` exists: ingest the spec's combined example and show the result.
run: $(BIN)
	$(BIN) ingest --db $(DB) fixtures/spec/combined.xml
	$(BIN) sql --db $(DB) "SELECT u.partner_customer_id, u.first_name, u.last_name, a.account_id, a.account_type, \
	  b.amount AS balance, count(t.transaction_id) AS transactions, coalesce(sum(t.amount), 0) AS net \
	  FROM users u JOIN accounts a USING (partner_id, partner_customer_id) \
	  LEFT JOIN balances b ON b.partner_id = a.partner_id AND b.account_id = a.account_id \
	    AND b.as_of = (SELECT max(as_of) FROM balances WHERE account_id = a.account_id) \
	  LEFT JOIN transactions t ON t.partner_id = a.partner_id AND t.account_id = a.account_id \
	  GROUP BY ALL ORDER BY a.account_id"

vet:
	$(GO) vet $(GOTAGS) ./...

# The whole suite, then the parser fuzz tests briefly.
test: vet
	$(GO) test $(GOTAGS) -count=1 ./...
	$(GO) test $(GOTAGS) -count=1 -race ./parse ./stages
	$(GO) test $(GOTAGS) -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 15s ./parse
	$(GO) test $(GOTAGS) -run '^$$' -fuzz '^FuzzPlainTokens$$' -fuzztime 15s ./parse

# Speed and memory on generated 1 GiB and 4 GiB files (not in CI; several minutes).
bench: $(BIN)
	$(GO) run $(GOTAGS) ./bench --bin $(BIN) --sizes 1GiB,4GiB

clean:
	rm -rf bin bench/out
