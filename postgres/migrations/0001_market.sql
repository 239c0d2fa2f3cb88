-- 0001_market creates the market's tables, mirroring the sqlite adapter's
-- schema: each object is stored whole as a JSON document (doc) beside the
-- columns that index and filter it, and the columns are derived from the
-- document on every write. Times are unix nanoseconds in UTC. Lists that
-- run "newest first" or "oldest first" order by seq, the insertion order,
-- because timestamps can tie.
--
-- Documents are TEXT, not JSONB: they round-trip byte for byte, and a
-- string holding U+0000 (which encoding/json writes as \u0000 and JSONB
-- refuses) stores like any other.
--
-- Sequence numbers come from explicit sequences rather than SERIAL, so that
-- CockroachDB, whose SERIAL is not sequential by default, numbers rows the
-- same way.

CREATE SEQUENCE intents_seq;
CREATE SEQUENCE bids_seq;
CREATE SEQUENCE messages_seq;
CREATE SEQUENCE contracts_seq;
CREATE SEQUENCE events_seq;

CREATE TABLE agents (
	id      TEXT PRIMARY KEY,
	arbiter BOOLEAN NOT NULL,
	bond    BIGINT NOT NULL,
	doc     TEXT NOT NULL
);
CREATE INDEX agents_arbiter ON agents (arbiter, id);

CREATE TABLE operator_grants (
	operator     TEXT PRIMARY KEY,
	microcredits BIGINT NOT NULL
);

CREATE TABLE offers (
	id     TEXT PRIMARY KEY,
	seller TEXT NOT NULL,
	intent TEXT NOT NULL,
	state  TEXT NOT NULL,
	doc    TEXT NOT NULL
);
CREATE INDEX offers_intent ON offers (intent, state, id);
CREATE INDEX offers_seller ON offers (seller, id);

CREATE TABLE intents (
	seq        BIGINT PRIMARY KEY DEFAULT nextval('intents_seq'),
	id         TEXT NOT NULL UNIQUE,
	buyer      TEXT NOT NULL,
	request_id TEXT, -- NULL when empty: only real request ids must be unique
	intent     TEXT NOT NULL,
	state      TEXT NOT NULL,
	due        BIGINT, -- the bid deadline while open, the award deadline while selecting, else NULL
	created_at BIGINT NOT NULL,
	doc        TEXT NOT NULL,
	UNIQUE (buyer, request_id)
);
CREATE INDEX intents_buyer ON intents (buyer, seq);
CREATE INDEX intents_intent ON intents (intent, seq);
CREATE INDEX intents_state ON intents (state, seq);
CREATE INDEX intents_due ON intents (due, seq) WHERE due IS NOT NULL;
CREATE INDEX intents_created ON intents (intent, created_at);

CREATE TABLE bids (
	seq         BIGINT PRIMARY KEY DEFAULT nextval('bids_seq'),
	id          TEXT NOT NULL UNIQUE,
	intent_id   TEXT NOT NULL,
	intent_type TEXT NOT NULL, -- copied from the intent when the bid is stored, for market statistics
	seller      TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	doc         TEXT NOT NULL
);
CREATE INDEX bids_intent ON bids (intent_id, seq);
CREATE INDEX bids_type ON bids (intent_type, created_at);

CREATE TABLE messages (
	seq    BIGINT PRIMARY KEY DEFAULT nextval('messages_seq'),
	id     TEXT NOT NULL UNIQUE,
	bid_id TEXT NOT NULL,
	doc    TEXT NOT NULL
);
CREATE INDEX messages_bid ON messages (bid_id, seq);

CREATE TABLE contracts (
	seq        BIGINT PRIMARY KEY DEFAULT nextval('contracts_seq'),
	id         TEXT NOT NULL UNIQUE,
	intent_id  TEXT NOT NULL,
	intent     TEXT NOT NULL, -- the intent type
	buyer      TEXT NOT NULL,
	seller     TEXT NOT NULL,
	parent     TEXT NOT NULL,
	state      TEXT NOT NULL,
	due        BIGINT, -- deliver_by while awarded, review_by while delivered or in review, else NULL
	awarded_at BIGINT NOT NULL,
	settled_at BIGINT, -- the outcome's settled_at; NULL until there is an outcome
	price      BIGINT NOT NULL,
	paid       BIGINT NOT NULL, -- the outcome's paid_microcredits; 0 until there is an outcome
	result     TEXT NOT NULL,   -- the outcome's result; '' until there is an outcome
	doc        TEXT NOT NULL
);
CREATE INDEX contracts_buyer ON contracts (buyer, seq);
CREATE INDEX contracts_seller ON contracts (seller, seq);
CREATE INDEX contracts_seller_intent ON contracts (seller, intent, state);
CREATE INDEX contracts_parent ON contracts (parent, seq);
CREATE INDEX contracts_state ON contracts (state, seq);
CREATE INDEX contracts_due ON contracts (due, seq) WHERE due IS NOT NULL;
CREATE INDEX contracts_awarded ON contracts (intent, awarded_at);
CREATE INDEX contracts_settled ON contracts (intent, settled_at);

-- contract_parties holds one row per agent party to a contract: its buyer,
-- its seller, and every arbiter assigned to it or that reviewed it. It
-- serves the agent filter of the contract list.
CREATE TABLE contract_parties (
	agent TEXT NOT NULL,
	seq   BIGINT NOT NULL, -- the contract's seq
	PRIMARY KEY (agent, seq)
);
CREATE INDEX contract_parties_seq ON contract_parties (seq);

CREATE TABLE receipts (
	seq      BIGINT PRIMARY KEY,
	contract TEXT NOT NULL,
	doc      TEXT NOT NULL
);

CREATE TABLE scores (
	agent  TEXT NOT NULL,
	intent TEXT NOT NULL,
	doc    TEXT NOT NULL,
	PRIMARY KEY (agent, intent)
);

CREATE TABLE pairs (
	buyer  TEXT NOT NULL,
	seller TEXT NOT NULL,
	intent TEXT NOT NULL,
	doc    TEXT NOT NULL,
	PRIMARY KEY (buyer, seller, intent)
);

CREATE TABLE arbiter_records (
	arbiter TEXT PRIMARY KEY,
	doc     TEXT NOT NULL
);

-- events is the market's event log. Appenders hold the store's event lock
-- from their first append until they commit, so events become visible in
-- seq order: a reader that has seen seq n never later finds a smaller one.
CREATE TABLE events (
	seq      BIGINT PRIMARY KEY DEFAULT nextval('events_seq'),
	type     TEXT NOT NULL,
	at       BIGINT NOT NULL,
	intent   TEXT NOT NULL,
	subject  TEXT NOT NULL,
	public   BOOLEAN NOT NULL, -- true when the audience is empty
	audience TEXT NOT NULL,    -- the audience as given, a JSON array
	data     BYTEA
);
CREATE INDEX events_intent ON events (intent, seq);

-- event_audience holds one row per agent an event is addressed to, so that
-- audience matching compares whole ids and never substrings.
CREATE TABLE event_audience (
	agent TEXT NOT NULL,
	seq   BIGINT NOT NULL,
	PRIMARY KEY (agent, seq)
);

-- idempotency and nonces are shared by every node on the database, so a
-- request replayed to another node is still recognised.
CREATE TABLE idempotency (
	key          TEXT PRIMARY KEY,
	request_hash TEXT NOT NULL,
	status       INTEGER NOT NULL,
	header       BYTEA,
	body         BYTEA,
	created_at   BIGINT NOT NULL
);

CREATE TABLE nonces (
	agent   TEXT NOT NULL,
	nonce   TEXT NOT NULL,
	expires BIGINT NOT NULL,
	PRIMARY KEY (agent, nonce)
);
CREATE INDEX nonces_expires ON nonces (expires);
