//! The store's schema history: append-only; each entry runs once, in its own transaction.

/// Migration `i` takes the store from `user_version = i` to `i + 1`. Never edit or reorder an
/// entry that has shipped; add a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE settings (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE users (
        name        TEXT PRIMARY KEY,
        permissions TEXT NOT NULL DEFAULT '',
        disabled    INTEGER NOT NULL DEFAULT 0,
        created     INTEGER NOT NULL
    );
    CREATE TABLE secrets (
        user_name TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
        secret    BLOB NOT NULL,
        rotated   INTEGER NOT NULL
    );
    CREATE TABLE keys (
        key_id     TEXT PRIMARY KEY,
        client_id  TEXT NOT NULL UNIQUE,
        user_name  TEXT NOT NULL,
        title      TEXT NOT NULL DEFAULT '',
        alg        TEXT NOT NULL,
        public_key TEXT NOT NULL,
        ip_ranges  TEXT NOT NULL DEFAULT '',
        scope      TEXT NOT NULL,
        issued     INTEGER NOT NULL,
        expires    INTEGER,
        revoked    INTEGER
    );
    CREATE INDEX keys_user ON keys(user_name);
    CREATE TABLE usage_log (
        id         INTEGER PRIMARY KEY,
        time       INTEGER NOT NULL,
        key_id     TEXT,
        user_name  TEXT,
        subject    TEXT,
        address    TEXT NOT NULL,
        user_agent TEXT,
        ok         INTEGER NOT NULL,
        reason     TEXT,
        grant_jti  TEXT,
        grant_exp  INTEGER,
        token_jti  TEXT
    );
    CREATE INDEX usage_log_key_time ON usage_log(key_id, time);
    CREATE INDEX usage_log_time ON usage_log(time);
    CREATE TABLE revoked_tokens (
        jti     TEXT PRIMARY KEY,
        exp     INTEGER NOT NULL,
        revoked INTEGER NOT NULL
    );
    -- Bumped by every change a running server must notice (see Store::generation).
    CREATE TABLE generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
    INSERT INTO generation VALUES (1, 0);
    CREATE TRIGGER users_i AFTER INSERT ON users BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER users_u AFTER UPDATE ON users BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER users_d AFTER DELETE ON users BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER secrets_i AFTER INSERT ON secrets BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER secrets_u AFTER UPDATE ON secrets BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER secrets_d AFTER DELETE ON secrets BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER keys_i AFTER INSERT ON keys BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER keys_u AFTER UPDATE ON keys BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER keys_d AFTER DELETE ON keys BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER revoked_i AFTER INSERT ON revoked_tokens BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER settings_i AFTER INSERT ON settings BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER settings_u AFTER UPDATE ON settings BEGIN UPDATE generation SET value = value + 1; END;
    "#,
    // 2: grants are single-use across every process on the store: a row per grant used,
    // until it expires. `key` is `store::replay_key` (a hash of the client and the grant's jti,
    // or its signature when it has none): short keys keep the table small and fast. Keyed by
    // expiry first, so that grants signed around the same time share pages and pruning is a
    // range at the front. Grants already logged are added by `Store::migrate` (SQL has no
    // SHA-256).
    r#"
    CREATE TABLE used_grants (
        exp INTEGER NOT NULL,
        key BLOB NOT NULL,
        PRIMARY KEY (exp, key)
    ) WITHOUT ROWID;
    ALTER TABLE usage_log ADD COLUMN no_jti INTEGER NOT NULL DEFAULT 0;
    "#,
    // 3: personal access tokens, allowed browser origins, and secret epochs (a PAT lives
    // only while its user's secret is the one it was made under). The generation moves for
    // every PAT change a check depends on, but not for `last_used` or the description.
    r#"
    ALTER TABLE keys ADD COLUMN origins TEXT NOT NULL DEFAULT '';
    ALTER TABLE secrets ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE pats (
        id           TEXT PRIMARY KEY,
        user_name    TEXT NOT NULL,
        hash         BLOB NOT NULL UNIQUE,
        last4        TEXT NOT NULL,
        description  TEXT NOT NULL DEFAULT '',
        scope        TEXT NOT NULL,
        ip_ranges    TEXT NOT NULL DEFAULT '',
        origins      TEXT NOT NULL DEFAULT '',
        created      INTEGER NOT NULL,
        expires      INTEGER,
        revoked      INTEGER,
        secret_epoch INTEGER NOT NULL,
        last_used    INTEGER
    );
    CREATE INDEX pats_user ON pats(user_name);
    CREATE TRIGGER pats_i AFTER INSERT ON pats BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER pats_u AFTER UPDATE OF user_name, hash, scope, ip_ranges, origins, expires, revoked, secret_epoch
        ON pats BEGIN UPDATE generation SET value = value + 1; END;
    CREATE TRIGGER pats_d AFTER DELETE ON pats BEGIN UPDATE generation SET value = value + 1; END;
    ALTER TABLE usage_log ADD COLUMN pat_id TEXT;
    "#,
    // 4: keys in Google's service-account format, known also by their client_email.
    r#"
    ALTER TABLE keys ADD COLUMN format TEXT NOT NULL DEFAULT 'tokenauth';
    ALTER TABLE keys ADD COLUMN client_email TEXT;
    CREATE UNIQUE INDEX keys_client_email ON keys(client_email) WHERE client_email IS NOT NULL;
    "#,
    // 5: the admin audit trail: a row per change, hash-chained (see store/audit.rs). Rows are
    // numbered by the chain, not by SQLite, so that a deleted newest row leaves a gap the head
    // in audit_state points past. Pruning moves the checkpoint: verification starts there.
    r#"
    CREATE TABLE audit (
        id        INTEGER PRIMARY KEY,
        time      INTEGER NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        target    TEXT NOT NULL,
        changes   TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE INDEX audit_time ON audit(time);
    CREATE TABLE audit_state (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        last_id         INTEGER NOT NULL,
        last_hash       TEXT NOT NULL,
        checkpoint_id   INTEGER NOT NULL,
        checkpoint_hash TEXT NOT NULL
    );
    INSERT INTO audit_state VALUES (1, 0,
        '0000000000000000000000000000000000000000000000000000000000000000', 0,
        '0000000000000000000000000000000000000000000000000000000000000000');
    "#,
];

/// The same history for PostgreSQL, step for step (so that a schema version means the same
/// on both): `BIGINT` for times and booleans (row mapping is shared), `BYTEA` for bytes.
/// Row triggers bump the generation and notify [`super::postgres::CHANNEL`], which every
/// `serve` replica listens on.
pub const PG_MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE settings (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE users (
        name        TEXT PRIMARY KEY,
        permissions TEXT NOT NULL DEFAULT '',
        disabled    BIGINT NOT NULL DEFAULT 0,
        created     BIGINT NOT NULL
    );
    CREATE TABLE secrets (
        user_name TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
        secret    BYTEA NOT NULL,
        rotated   BIGINT NOT NULL
    );
    CREATE TABLE keys (
        key_id     TEXT PRIMARY KEY,
        client_id  TEXT NOT NULL UNIQUE,
        user_name  TEXT NOT NULL,
        title      TEXT NOT NULL DEFAULT '',
        alg        TEXT NOT NULL,
        public_key TEXT NOT NULL,
        ip_ranges  TEXT NOT NULL DEFAULT '',
        scope      TEXT NOT NULL,
        issued     BIGINT NOT NULL,
        expires    BIGINT,
        revoked    BIGINT
    );
    CREATE INDEX keys_user ON keys(user_name);
    CREATE TABLE usage_log (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        time       BIGINT NOT NULL,
        key_id     TEXT,
        user_name  TEXT,
        subject    TEXT,
        address    TEXT NOT NULL,
        user_agent TEXT,
        ok         BIGINT NOT NULL,
        reason     TEXT,
        grant_jti  TEXT,
        grant_exp  BIGINT,
        token_jti  TEXT
    );
    CREATE INDEX usage_log_key_time ON usage_log(key_id, time);
    CREATE INDEX usage_log_time ON usage_log(time);
    CREATE TABLE revoked_tokens (
        jti     TEXT PRIMARY KEY,
        exp     BIGINT NOT NULL,
        revoked BIGINT NOT NULL
    );
    CREATE TABLE generation (id BIGINT PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL);
    INSERT INTO generation VALUES (1, 0);
    CREATE FUNCTION tokenauth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE generation SET value = value + 1;
        PERFORM pg_notify('tokenauth_changes', '');
        RETURN NULL;
    END $$;
    CREATE TRIGGER users_c AFTER INSERT OR UPDATE OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION tokenauth_changed();
    CREATE TRIGGER secrets_c AFTER INSERT OR UPDATE OR DELETE ON secrets
        FOR EACH ROW EXECUTE FUNCTION tokenauth_changed();
    CREATE TRIGGER keys_c AFTER INSERT OR UPDATE OR DELETE ON keys
        FOR EACH ROW EXECUTE FUNCTION tokenauth_changed();
    CREATE TRIGGER revoked_i AFTER INSERT ON revoked_tokens
        FOR EACH ROW EXECUTE FUNCTION tokenauth_changed();
    CREATE TRIGGER settings_c AFTER INSERT OR UPDATE ON settings
        FOR EACH ROW EXECUTE FUNCTION tokenauth_changed();
    "#,
    // 2: single-use grants (see MIGRATIONS[1]); nothing to backfill on a new backend.
    r#"
    CREATE TABLE used_grants (
        exp BIGINT NOT NULL,
        key BYTEA NOT NULL,
        PRIMARY KEY (exp, key)
    );
    ALTER TABLE usage_log ADD COLUMN no_jti BIGINT NOT NULL DEFAULT 0;
    "#,
    // 3: personal access tokens, allowed origins, secret epochs.
    r#"
    ALTER TABLE keys ADD COLUMN origins TEXT NOT NULL DEFAULT '';
    ALTER TABLE secrets ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
    CREATE TABLE pats (
        id           TEXT PRIMARY KEY,
        user_name    TEXT NOT NULL,
        hash         BYTEA NOT NULL UNIQUE,
        last4        TEXT NOT NULL,
        description  TEXT NOT NULL DEFAULT '',
        scope        TEXT NOT NULL,
        ip_ranges    TEXT NOT NULL DEFAULT '',
        origins      TEXT NOT NULL DEFAULT '',
        created      BIGINT NOT NULL,
        expires      BIGINT,
        revoked      BIGINT,
        secret_epoch BIGINT NOT NULL,
        last_used    BIGINT
    );
    CREATE INDEX pats_user ON pats(user_name);
    CREATE TRIGGER pats_i AFTER INSERT OR DELETE ON pats
        FOR EACH ROW EXECUTE FUNCTION tokenauth_changed();
    CREATE TRIGGER pats_u AFTER UPDATE OF user_name, hash, scope, ip_ranges, origins, expires, revoked, secret_epoch
        ON pats FOR EACH ROW EXECUTE FUNCTION tokenauth_changed();
    ALTER TABLE usage_log ADD COLUMN pat_id TEXT;
    "#,
    // 4: Google-format keys.
    r#"
    ALTER TABLE keys ADD COLUMN format TEXT NOT NULL DEFAULT 'tokenauth';
    ALTER TABLE keys ADD COLUMN client_email TEXT;
    CREATE UNIQUE INDEX keys_client_email ON keys(client_email) WHERE client_email IS NOT NULL;
    "#,
    // 5: the admin audit trail (see MIGRATIONS[4]).
    r#"
    CREATE TABLE audit (
        id        BIGINT PRIMARY KEY,
        time      BIGINT NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        target    TEXT NOT NULL,
        changes   TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE INDEX audit_time ON audit(time);
    CREATE TABLE audit_state (
        id              BIGINT PRIMARY KEY CHECK (id = 1),
        last_id         BIGINT NOT NULL,
        last_hash       TEXT NOT NULL,
        checkpoint_id   BIGINT NOT NULL,
        checkpoint_hash TEXT NOT NULL
    );
    INSERT INTO audit_state VALUES (1, 0,
        '0000000000000000000000000000000000000000000000000000000000000000', 0,
        '0000000000000000000000000000000000000000000000000000000000000000');
    "#,
];
