"""The database schema as an ordered list of migrations, applied on open in one transaction.

Never edit a released migration: append a new one. ``meta.schema_version`` is the number of the last
migration applied; a file written by a newer nasname (higher version) is refused, not guessed at.
"""

from __future__ import annotations

import sqlite3

from engine.errors import ConfigurationError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

# Version 1: records, their encrypted templates and the change log the indexes replay.
_V1 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # id is the int64 label used by every index; AUTOINCREMENT so a label is never reused
    """CREATE TABLE records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ref_id TEXT NOT NULL UNIQUE,
        partition TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('active', 'pending', 'deleted')),
        attributes TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        updated REAL NOT NULL)""",
    "CREATE INDEX records_by_partition ON records (partition, status)",
    """CREATE TABLE templates (
        record_id INTEGER NOT NULL REFERENCES records (id),
        modality TEXT NOT NULL,
        model_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        key_id TEXT NOT NULL,
        blob BLOB NOT NULL,
        PRIMARY KEY (record_id, modality))""",
    """CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id INTEGER NOT NULL REFERENCES records (id),
        op TEXT NOT NULL CHECK (op IN ('upsert', 'status', 'delete')),
        time REAL NOT NULL)""",
)

# Version 2: kept sample images, adjudication queue, hash-chained audit log, API tokens.
_V2 = (
    """CREATE TABLE images (
        record_id INTEGER NOT NULL REFERENCES records (id),
        modality TEXT NOT NULL,
        key_id TEXT NOT NULL,
        blob BLOB NOT NULL,
        PRIMARY KEY (record_id, modality))""",
    """CREATE TABLE adjudication (
        record_id INTEGER PRIMARY KEY REFERENCES records (id),
        candidates TEXT NOT NULL,
        created REAL NOT NULL,
        outcome TEXT CHECK (outcome IN ('same', 'distinct')),
        resolved REAL)""",
    "CREATE INDEX adjudication_open ON adjudication (outcome, created)",
    """CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id INTEGER NOT NULL REFERENCES adjudication (record_id),
        actor TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('same', 'distinct')),
        comment TEXT NOT NULL DEFAULT '',
        time REAL NOT NULL)""",
    "CREATE INDEX decisions_by_record ON decisions (record_id)",
    """CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        ref_id TEXT,
        details TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL)""",
    # Append-only by construction for every client that goes through SQLite normally; the hash chain
    # catches whoever drops these triggers and edits the file anyway.
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        hash BLOB NOT NULL UNIQUE,
        created REAL NOT NULL,
        last_used REAL,
        revoked REAL)""",
)

# Idempotency keys (engine.store.idempotency): a retried write returns the first call's result.
_V3_IDEMPOTENCY = (
    """CREATE TABLE idempotency (
        caller TEXT NOT NULL,
        request_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        result BLOB NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (caller, request_id))""",
    "CREATE INDEX idempotency_by_age ON idempotency (created)",
)

# Operations event log (engine.events): one row per operation attempt, for statistics and reports.
# No reference id, attribute value or biometric ever goes in here (the rows feed aggregates that
# leave the server). ``templates.quality`` keeps the extractor's quality score for data-quality checks.
_V4_EVENTS = (
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        op TEXT NOT NULL,
        outcome TEXT NOT NULL,
        partition TEXT NOT NULL DEFAULT '',
        station TEXT NOT NULL DEFAULT '',
        modalities TEXT NOT NULL DEFAULT '',
        reasons TEXT NOT NULL DEFAULT '',
        latency_ms REAL NOT NULL DEFAULT 0,
        models TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        count INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX events_by_time ON events (time)",
    "ALTER TABLE templates ADD COLUMN quality REAL",
)

# Console users (server/web): people log in with a username and password (argon2id hash); their role
# is one of server.auth.Role. ``id`` (not the username) is the actor in the audit log.
_V5_USERS = (
    """CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        hash TEXT NOT NULL,
        created REAL NOT NULL,
        password_set REAL NOT NULL,
        last_login REAL,
        disabled REAL)""",
    # a record's history (console record page) reads the audit rows of one ref id
    "CREATE INDEX audit_by_ref ON audit (ref_id, seq)",
)

# Adjudication history: a record may have several cases over time (a decided record can be reopened),
# at most one open; each decision names the mate for "same". Tables rebuilt (SQLite cannot change a
# primary key) under their old names; existing cases and decisions are kept with their ids.
_V6_ADJUDICATION_HISTORY = (
    """CREATE TABLE adjudication_v3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id INTEGER NOT NULL REFERENCES records (id),
        candidates TEXT NOT NULL,
        created REAL NOT NULL,
        outcome TEXT CHECK (outcome IN ('same', 'distinct')),
        resolved REAL,
        opened_by TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '')""",
    "INSERT INTO adjudication_v3 (record_id, candidates, created, outcome, resolved) "
    "SELECT record_id, candidates, created, outcome, resolved FROM adjudication ORDER BY record_id",
    """CREATE TABLE decisions_v3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id INTEGER NOT NULL REFERENCES adjudication_v3 (id),
        actor TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('same', 'distinct')),
        mate_ref_id TEXT,
        comment TEXT NOT NULL DEFAULT '',
        time REAL NOT NULL)""",
    "INSERT INTO decisions_v3 (id, case_id, actor, decision, comment, time) "
    "SELECT d.id, a.id, d.actor, d.decision, d.comment, d.time "
    "FROM decisions d JOIN adjudication_v3 a ON a.record_id = d.record_id",
    "DROP TABLE decisions",
    "DROP TABLE adjudication",
    "ALTER TABLE adjudication_v3 RENAME TO adjudication",
    "ALTER TABLE decisions_v3 RENAME TO decisions",
    "CREATE UNIQUE INDEX adjudication_one_open ON adjudication (record_id) WHERE outcome IS NULL",
    "CREATE INDEX adjudication_by_record ON adjudication (record_id)",
    "CREATE INDEX decisions_by_case ON decisions (case_id)",
)

# Transfer between sites (engine.transfer): trusted peers with the per-peer ledger of packets sent and
# received, where each imported record came from, and what each item of an imported packet became.
_V7_TRANSFER = (
    """CREATE TABLE transfer_peers (
        site_id TEXT PRIMARY KEY,
        sign_public BLOB NOT NULL,
        agree_public BLOB NOT NULL,
        trusted REAL NOT NULL,
        revoked REAL,
        out_packet INTEGER NOT NULL DEFAULT 0,
        out_seq INTEGER NOT NULL DEFAULT 0,
        out_time REAL,
        in_packet INTEGER NOT NULL DEFAULT 0,
        in_seq INTEGER NOT NULL DEFAULT 0,
        in_time REAL)""",
    """CREATE TABLE transfer_origin (
        ref_id TEXT PRIMARY KEY,
        origin_site TEXT NOT NULL,
        origin_ref TEXT NOT NULL,
        origin_seq INTEGER NOT NULL,
        peer TEXT NOT NULL,
        packet INTEGER NOT NULL,
        conflict INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX transfer_origin_by_packet ON transfer_origin (peer, packet)",
    "CREATE INDEX transfer_origin_by_origin ON transfer_origin (origin_site, origin_ref)",
    """CREATE TABLE transfer_items (
        peer TEXT NOT NULL,
        packet INTEGER NOT NULL,
        item INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        PRIMARY KEY (peer, packet, item))""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1, _V2, _V3_IDEMPOTENCY, _V4_EVENTS, _V5_USERS, _V6_ADJUDICATION_HISTORY, _V7_TRANSFER)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """0 for an empty file, else ``meta.schema_version``."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the file to ``target`` (all pending migrations in one IMMEDIATE transaction: a failure
    leaves the file as it was). Returns the version found before migrating. ``conn`` must be in
    autocommit mode (no open transaction)."""
    conn.execute("BEGIN IMMEDIATE")  # serialise concurrent openers while reading the version
    try:
        found = schema_version(conn)
        if found > SCHEMA_VERSION:
            raise ConfigurationError(
                f"database schema version {found} is newer than this nasname supports ({SCHEMA_VERSION})",
                reason="SCHEMA_TOO_NEW")
        for version in range(found + 1, target + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(version),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
