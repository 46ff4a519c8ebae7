// Package warehouse is the embedded DuckDB warehouse: its schema (a product
// interface for analysts, documented in README), the bulk loader that applies
// one file atomically, and read-only SQL.
package warehouse

// schema is applied at every open; statements are idempotent. Keys are
// enforced by the loader rather than by PRIMARY KEY constraints: DuckDB keeps
// ART indexes in memory, which would make memory grow with the warehouse.
const schema = `
CREATE TABLE IF NOT EXISTS users (
	partner_id          VARCHAR NOT NULL,
	partner_customer_id VARCHAR NOT NULL,
	first_name          VARCHAR,
	last_name           VARCHAR,
	email               VARCHAR,
	zip_code            VARCHAR,
	user_experience     VARCHAR,
	source_file         VARCHAR,
	source_line         INTEGER,
	updated_at          TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
	partner_id          VARCHAR NOT NULL,
	partner_customer_id VARCHAR NOT NULL,
	account_id          VARCHAR NOT NULL,
	account_number      VARCHAR,
	fi_name             VARCHAR NOT NULL,
	nickname            VARCHAR,
	account_type        VARCHAR NOT NULL,
	account_class       VARCHAR NOT NULL,
	state               VARCHAR NOT NULL,
	account_experience  VARCHAR,
	source_file         VARCHAR,
	source_line         INTEGER,
	updated_at          TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS balances (
	partner_id    VARCHAR NOT NULL,
	account_id    VARCHAR NOT NULL,
	balance_type  VARCHAR NOT NULL,
	amount        DECIMAL(18,2) NOT NULL,
	currency_code VARCHAR NOT NULL,
	as_of         DATE NOT NULL,
	updated_at    TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS account_properties (
	partner_id     VARCHAR NOT NULL,
	account_id     VARCHAR NOT NULL,
	property_type  VARCHAR NOT NULL,
	property_value VARCHAR NOT NULL,
	updated_at     TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
	partner_id       VARCHAR NOT NULL,
	account_id       VARCHAR NOT NULL,
	transaction_id   VARCHAR NOT NULL,
	transaction_type VARCHAR NOT NULL,
	posted_at        TIMESTAMPTZ NOT NULL,
	posted_on        DATE NOT NULL,
	originated_at    TIMESTAMPTZ,
	originated_on    DATE,
	amount           DECIMAL(18,2) NOT NULL,
	memo             VARCHAR NOT NULL,
	original_name    VARCHAR NOT NULL,
	check_number     VARCHAR,
	source_file      VARCHAR,
	source_line      INTEGER,
	updated_at       TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS ingests (
	partner_id  VARCHAR NOT NULL,
	file        VARCHAR NOT NULL,
	file_type   VARCHAR NOT NULL,
	as_of       DATE NOT NULL,
	started_at  TIMESTAMPTZ NOT NULL,
	finished_at TIMESTAMPTZ NOT NULL,
	status      VARCHAR NOT NULL,
	bytes       BIGINT NOT NULL,
	report      JSON NOT NULL
);
-- Added with upload jobs; the ALTER upgrades warehouses created before.
ALTER TABLE ingests ADD COLUMN IF NOT EXISTS job_id VARCHAR;
-- Added with enrichment (stages/enrich). A transaction points at the decision
-- that enriched it: its nickname, tag, why, and the merchant user rules match.
-- Transactions decided alike share one row, so a load writes one integer per
-- transaction instead of four strings.
CREATE TABLE IF NOT EXISTS enrichments (
	enrichment_id BIGINT NOT NULL,
	nickname      VARCHAR,
	tag           VARCHAR, -- NULL: untagged
	tag_reason    VARCHAR,
	merchant_key  VARCHAR
);
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS enrichment_id BIGINT;
-- Users' "tag similar transactions" rules (the spec's tagging.repeat).
CREATE TABLE IF NOT EXISTS tag_rules (
	partner_id          VARCHAR NOT NULL,
	rule_id             VARCHAR NOT NULL,
	partner_customer_id VARCHAR NOT NULL,
	account_id          VARCHAR, -- NULL: all the user's accounts
	match_key           VARCHAR NOT NULL,
	nickname            VARCHAR NOT NULL,
	tag                 VARCHAR NOT NULL,
	posted_from         DATE,    -- NULL: any date
	created_at          TIMESTAMPTZ NOT NULL
);
-- Added with the reporting API. A user's edits of one transaction (PUT
-- transactions/:id): they overlay the enrichment and outlive re-sends of
-- the transaction, since a file never writes here.
CREATE TABLE IF NOT EXISTS transaction_edits (
	partner_id     VARCHAR NOT NULL,
	account_id     VARCHAR NOT NULL,
	transaction_id VARCHAR NOT NULL,
	nickname       VARCHAR, -- NULL: the enrichment's
	-- NULL: the enrichment's tag; []: untagged; else the user's tags, each
	-- with the part of the absolute amount it carries (a split, or one tag).
	tags           STRUCT(name VARCHAR, amount DECIMAL(18,2))[],
	edited_at      TIMESTAMPTZ NOT NULL
);
-- Users' manual networth accounts (additional_networth_account).
CREATE TABLE IF NOT EXISTS networth_accounts (
	partner_id          VARCHAR NOT NULL,
	partner_customer_id VARCHAR NOT NULL,
	networth_account_id BIGINT NOT NULL,
	name                VARCHAR NOT NULL,
	account_type        VARCHAR NOT NULL, -- asset or debt
	balance             DECIMAL(18,2) NOT NULL,
	created_at          TIMESTAMPTZ NOT NULL,
	updated_at          TIMESTAMPTZ NOT NULL
);
-- Added with the reporting API's per-user reads. An account's key is a
-- number given when a file first creates the account, in file order, and
-- copied to its balances and transactions. A user's accounts have near keys,
-- so their rows are found through zone maps on one integer column: DuckDB
-- prunes and compares integers far faster than account_id strings (see
-- README, Reporting API). Warehouses of earlier builds get keys at open.
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS account_key BIGINT;
ALTER TABLE balances ADD COLUMN IF NOT EXISTS account_key BIGINT;
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS account_key BIGINT;
-- owner_hash finds a user's accounts by one integer (the API did so per
-- request before it kept the accounts in memory; analysts still can): the
-- upper 64 bits of the MD5 of partner_id || ':' || partner_customer_id.
-- Comparing one integer column over accounts costs 0.5 ms where the string
-- took 2.2.
-- ART indexes served this before (0.3 ms), but DuckDB 1.4.5 corrupted them
-- when a load deleted indexed rows while API reads ran (an INTERNAL error,
-- then a crash on the next lookup), so they are dropped.
DROP INDEX IF EXISTS users_by_customer;
DROP INDEX IF EXISTS accounts_by_owner;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS owner_hash UBIGINT;
-- Added with push batches: a transaction the batch asked to hide (hide:
-- true) is left out of the API's lists, search and expenses; NULL is shown.
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS hidden BOOLEAN;
-- Added with the API's user writes (POST and PUT users): what the spec's
-- users carry and files do not. A file's update of the user leaves it; a
-- delete of the user, by file, batch or API, removes it.
` + userProfilesTable + `
-- Added with the API's account writes (PUT accounts/:id): the user's name
-- and display type of an account. They overlay the FI's and outlive its
-- re-sends, as transaction edits do; a delete of the account removes them.
` + accountEditsTable + `
-- What analysts read: each transaction with its enrichment, and the user's
-- nickname where they gave one.
CREATE OR REPLACE VIEW enriched_transactions AS
SELECT t.partner_id, t.account_id, t.transaction_id, t.transaction_type, t.posted_at, t.posted_on,
	t.originated_at, t.originated_on, t.amount, t.memo, t.original_name, t.check_number, t.source_file,
	t.source_line, t.updated_at, coalesce(x.nickname, e.nickname) AS nickname, e.tag, e.tag_reason, e.merchant_key,
	x.tags AS user_tags, x.edited_at, coalesce(t.hidden, false) AS hidden
FROM transactions t LEFT JOIN enrichments e USING (enrichment_id)
LEFT JOIN transaction_edits x USING (partner_id, account_id, transaction_id);
-- The spec's tags [{name, balance}]: the user's tags where they set them,
-- else the enrichment's one tag carrying the absolute amount.
CREATE OR REPLACE VIEW transaction_tags AS
SELECT partner_id, account_id, transaction_id, tag, abs(amount) AS amount, tag_reason
FROM enriched_transactions WHERE user_tags IS NULL AND tag IS NOT NULL
UNION ALL
SELECT partner_id, account_id, transaction_id, u.name, u.amount, 'user' AS tag_reason
FROM (SELECT partner_id, account_id, transaction_id, unnest(user_tags) AS u FROM enriched_transactions WHERE user_tags IS NOT NULL);
`

// Tables added since the first warehouses. Opened read-only (flatfiler sql
// or export offline), a warehouse last written by an earlier build lacks
// them; each connection then gets empty temporary ones of the same shape
// (see lateTables), as the upgrade at the next writable open would leave.
const (
	userProfilesTable = `CREATE TABLE IF NOT EXISTS user_profiles (
	partner_id          VARCHAR NOT NULL,
	partner_customer_id VARCHAR NOT NULL,
	login               VARCHAR,
	birth_year          INTEGER,
	sex                 VARCHAR, -- Male or Female
	custom_tags         VARCHAR[],
	updated_at          TIMESTAMPTZ NOT NULL
);`
	accountEditsTable = `CREATE TABLE IF NOT EXISTS account_edits (
	partner_id           VARCHAR NOT NULL,
	account_id           VARCHAR NOT NULL,
	name                 VARCHAR, -- NULL: the FI's
	display_account_type VARCHAR, -- NULL: the account type
	edited_at            TIMESTAMPTZ NOT NULL
);`
)

// lateTables are the tables added since the first warehouses, by name.
var lateTables = map[string]string{"user_profiles": userProfilesTable, "account_edits": accountEditsTable}
