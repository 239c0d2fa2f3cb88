-- 0002_ledger creates the ledger's tables. Ids are the ledger's 128-bit ids
-- as UUIDs (16 bytes, compared bytewise, so that ORDER BY id is the order
-- in which every writer locks accounts). Counters and amounts are BIGINT:
-- the ledger keeps every counter at or below MaxInt64. Mandate limits are
-- uint64 in Go and stored bit for bit in BIGINT. Timestamps are unix
-- nanoseconds.

-- ledger_accounts holds each account and its four counters. last_ts is the
-- timestamp of the latest event that touched the account: the next event
-- on it is stamped later, so timestamps increase along every account's
-- history however many nodes write. Every transfer rewrites two rows, so
-- pages keep room for the new versions (fillfactor), which lets
-- PostgreSQL update them in place without touching the index (CockroachDB
-- accepts and ignores the setting).
CREATE TABLE ledger_accounts (
	id              UUID PRIMARY KEY,
	user_data       UUID NOT NULL,
	code            INTEGER NOT NULL,
	flags           INTEGER NOT NULL,
	debits_pending  BIGINT NOT NULL,
	debits_posted   BIGINT NOT NULL,
	credits_pending BIGINT NOT NULL,
	credits_posted  BIGINT NOT NULL,
	created_at      BIGINT NOT NULL,
	last_ts         BIGINT NOT NULL
) WITH (fillfactor = 70);

-- ledger_transfers holds every committed transfer, never updated. Its
-- primary key is the idempotency key. For a post or void, the accounts are
-- the pending transfer's and amount is what moved; requested is the amount
-- as the client sent it, which an idempotent retry must repeat. A zero
-- pending_id means none.
CREATE TABLE ledger_transfers (
	id                UUID PRIMARY KEY,
	debit_account_id  UUID NOT NULL,
	credit_account_id UUID NOT NULL,
	amount            BIGINT NOT NULL,
	requested         BIGINT NOT NULL,
	pending_id        UUID NOT NULL,
	user_data         UUID NOT NULL,
	timeout           BIGINT NOT NULL,
	code              INTEGER NOT NULL,
	flags             INTEGER NOT NULL,
	ts                BIGINT NOT NULL
);

-- ledger_pending holds every pending transfer and how it stands: status 1
-- open, 2 posted, 3 voided, 4 expired (ledger.PendingStatus). An open row
-- changes only under the locks of its row and of both its accounts, so it
-- resolves exactly once. expires_at is 0 for a reservation without a
-- timeout.
CREATE TABLE ledger_pending (
	id                UUID PRIMARY KEY,
	debit_account_id  UUID NOT NULL,
	credit_account_id UUID NOT NULL,
	amount            BIGINT NOT NULL,
	expires_at        BIGINT NOT NULL,
	status            SMALLINT NOT NULL,
	resolved_at       BIGINT NOT NULL -- 0 while open
);
-- Tick finds the open reservations that are due, and a batch the due ones
-- that hold its debit accounts' funds.
CREATE INDEX ledger_pending_due ON ledger_pending (expires_at) WHERE status = 1 AND expires_at <> 0;
CREATE INDEX ledger_pending_debit_due ON ledger_pending (debit_account_id, expires_at) WHERE status = 1 AND expires_at <> 0;

-- ledger_mandates holds each wallet's spending mandate; none means no
-- limits. expires_at is 0 for a mandate that does not expire.
CREATE TABLE ledger_mandates (
	account_id       UUID PRIMARY KEY,
	max_per_transfer BIGINT NOT NULL,
	budget           BIGINT NOT NULL,
	window_ns        BIGINT NOT NULL,
	counterparties   UUID[] NOT NULL,
	expires_at       BIGINT NOT NULL
);

-- ledger_spends holds the debits a mandate's budget counts: one per plain
-- or pending transfer, keyed by the transfer. A reservation's spend shrinks
-- to what was posted when it resolves, to 0 when voided or expired.
CREATE TABLE ledger_spends (
	transfer_id UUID PRIMARY KEY,
	account_id  UUID NOT NULL,
	ts          BIGINT NOT NULL,
	amount      BIGINT NOT NULL
);
CREATE INDEX ledger_spends_window ON ledger_spends (account_id, ts);
