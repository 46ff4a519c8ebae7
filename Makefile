# flatfiler: `make run` and `make test` are all a fresh machine needs.
GO      ?= go
TAGS    := duckdb_arrow
# The Arrow bridge of duckdb-go is compiled only with this tag.
GOTAGS  := -tags=$(TAGS)
BIN     := bin/flatfiler
DB      ?= data/warehouse.duckdb
SOURCES := $(shell find . -name '*.go' -not -path './bench/out/*') go.mod go.sum

.PHONY: build run test fuzz vet bench bench-api bench-cluster clean tools enrich-eval

# System tools the tests and benchmarks drive: promtool (Debian's prometheus
# package) checks /metrics, the OpenSSH sftp client and curl walk the
# quickstart, OpenSSH's sftp-server is the benchmark's reference; psql,
# psycopg2 and pgjdbc (run by Java) are the SQL endpoint's real clients;
# PostgreSQL's server (not on PATH in Debian) holds the cluster tests' leases.
TOOLS    := promtool:prometheus psql:postgresql-client /usr/lib/postgresql/*/bin/initdb:postgresql /usr/lib/python3/dist-packages/psycopg2:python3-psycopg2 javac:default-jdk-headless /usr/share/java/postgresql.jar:libpostgresql-jdbc-java sftp:openssh-client curl:curl md5sum:coreutils /usr/lib/openssh/sftp-server:openssh-sftp-server /usr/sbin/sshd:openssh-server bc:bc
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

build: $(BIN)

$(BIN): $(SOURCES)
	$(GO) build $(GOTAGS) -o $(BIN) ./cmd/flatfiler

# The server on embedded defaults: data in ./data, SFTP on 127.0.0.1:2022,
# HTTP on 127.0.0.1:8080. The first start creates partner demo and prints
# its secrets.
# Loopback only: the harvest demo's endpoint (flatfiler harvest-sim) is on
# this machine too.
run: $(BIN)
	$(BIN) serve --harvest-allow-private

tools:
	@missing=""; for t in $(TOOLS); do cmd=$${t%%:*}; pkg=$${t#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -e $$cmd ] || missing="$$missing $$pkg"; done; \
	  if [ -n "$$missing" ]; then echo "installing$$missing"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

vet:
	$(GO) vet $(GOTAGS) ./...

# The whole suite, then every fuzz target briefly: each must execute at
# least 2,000 inputs in its 10 s (scripts/fuzz.sh prints the counts).
test: vet tools
	$(GO) test $(GOTAGS) -count=1 ./...
	$(GO) test $(GOTAGS) -count=1 -race ./parse ./stages ./intake/inbox ./intake/sftpd ./intake/jobs ./intake/pull
	scripts/fuzz.sh 10s 2000

# Every fuzz target for FUZZTIME each (not in CI; half an hour by default).
FUZZTIME ?= 5m
fuzz:
	scripts/fuzz.sh $(FUZZTIME) 100000

# Enrichment quality on the labeled memos (or LABELS=your-file.tsv): nickname
# exact match, tag accuracy, wrong tags, per-tag precision and recall.
# Fails below the targets, as make test does.
enrich-eval: $(BIN)
	$(BIN) enrich-eval $(if $(LABELS),--labels $(LABELS))

# Speed and memory on generated files of every shape (1 GiB each: mixed,
# members, cards, and the nightly file onto the mixed one's warehouse; 4 GiB
# of mixed), 100 MB push batches of three shapes PUT to serve and 200 small
# ones timed to their callbacks, and SFTP upload speed against OpenSSH's
# sftp-server (not in CI; about a quarter of an hour).
bench: $(BIN) tools
	$(GO) run $(GOTAGS) ./bench --bin $(BIN)
	bench/sftp.sh $(BIN) 1GiB

# The reporting API under load, on warehouses of three shapes (mixed and
# members of 100k users, cards of 10M transactions), each served by
# flatfiler serve: 32 connections on expenses, networth and a transactions
# page, alone and while the shape's 1 GiB nightly file is uploaded and
# applied. Each warehouse is built once in bench/out/api/SHAPE (the mixed
# one is 7 GB); every run starts from a copy of it.
bench-api: $(BIN) tools
	$(GO) run $(GOTAGS) ./bench/api --bin $(BIN)

# A nightly delivery of many partners to one node, then to three nodes with
# three shards, all on this machine (PostgreSQL started by the benchmark, as
# the tests start it); not in CI.
bench-cluster: $(BIN) tools
	$(GO) run $(GOTAGS) ./bench/cluster --bin $(BIN)

clean:
	rm -rf bin bench/out
