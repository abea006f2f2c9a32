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
    // 6: the change feed (store/feed.rs) replaces the generation counter: a server applies
    // each change as itself instead of reloading everything. Triggers write a row per
    // changed row a check depends on, unless a bulk write quiets them (`feed_state.quiet`,
    // only ever set inside `store copy`'s transaction). Rotating a secret names the user's
    // live tokens too, which it ends. Indexes for what servers sweep (expired keys and
    // tokens) and what `/revoke` prunes (revoked ids past their expiry).
    r#"
    DROP TRIGGER users_i; DROP TRIGGER users_u; DROP TRIGGER users_d;
    DROP TRIGGER secrets_i; DROP TRIGGER secrets_u; DROP TRIGGER secrets_d;
    DROP TRIGGER keys_i; DROP TRIGGER keys_u; DROP TRIGGER keys_d;
    DROP TRIGGER revoked_i; DROP TRIGGER settings_i; DROP TRIGGER settings_u;
    DROP TRIGGER pats_i; DROP TRIGGER pats_u; DROP TRIGGER pats_d;
    DROP TABLE generation;
    CREATE TABLE changes (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        time   INTEGER NOT NULL DEFAULT (unixepoch()),
        entity TEXT NOT NULL,
        id     TEXT NOT NULL
    );
    CREATE INDEX changes_time ON changes(time);
    CREATE TABLE feed_state (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        pruned INTEGER NOT NULL,
        quiet  INTEGER NOT NULL
    );
    INSERT INTO feed_state VALUES (1, 0, 0);
    CREATE TRIGGER users_feed_i AFTER INSERT ON users WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('user', NEW.name); END;
    CREATE TRIGGER users_feed_u AFTER UPDATE ON users WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('user', NEW.name); END;
    CREATE TRIGGER users_feed_d AFTER DELETE ON users WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('user', OLD.name); END;
    CREATE TRIGGER secrets_feed_i AFTER INSERT ON secrets WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('user', NEW.user_name); END;
    CREATE TRIGGER secrets_feed_u AFTER UPDATE ON secrets WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN
            INSERT INTO changes(entity, id) VALUES ('user', NEW.user_name);
            INSERT INTO changes(entity, id) SELECT 'pat', id FROM pats
                WHERE user_name = NEW.user_name AND revoked IS NULL AND NEW.epoch <> OLD.epoch;
        END;
    CREATE TRIGGER secrets_feed_d AFTER DELETE ON secrets WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('user', OLD.user_name); END;
    CREATE TRIGGER keys_feed_i AFTER INSERT ON keys WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('key', NEW.key_id); END;
    CREATE TRIGGER keys_feed_u AFTER UPDATE ON keys WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('key', NEW.key_id); END;
    CREATE TRIGGER keys_feed_d AFTER DELETE ON keys WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('key', OLD.key_id); END;
    CREATE TRIGGER pats_feed_i AFTER INSERT ON pats WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('pat', NEW.id); END;
    CREATE TRIGGER pats_feed_u
        AFTER UPDATE OF user_name, hash, scope, ip_ranges, origins, expires, revoked, secret_epoch
        ON pats WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('pat', NEW.id); END;
    CREATE TRIGGER pats_feed_d AFTER DELETE ON pats WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('pat', OLD.id); END;
    CREATE TRIGGER revoked_feed_i AFTER INSERT ON revoked_tokens WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('jti', NEW.jti); END;
    CREATE TRIGGER settings_feed_i AFTER INSERT ON settings WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('setting', NEW.name); END;
    CREATE TRIGGER settings_feed_u AFTER UPDATE ON settings WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('setting', NEW.name); END;
    CREATE TRIGGER settings_feed_d AFTER DELETE ON settings WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('setting', OLD.name); END;
    CREATE INDEX revoked_tokens_exp ON revoked_tokens(exp);
    CREATE INDEX keys_expires ON keys(expires);
    CREATE INDEX pats_expires ON pats(expires);
    "#,
    // 7: refusals are logged in aggregate: the first of a kind (address, key or token,
    // reason) in each minute is a row, and repeats add to its `count`, found again by its
    // `refusal_group` (unique, so replicas add to the same row). What a caller who proved
    // nothing can make the log grow by is bounded by kinds, not requests.
    r#"
    ALTER TABLE usage_log ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE usage_log ADD COLUMN refusal_group TEXT;
    CREATE UNIQUE INDEX usage_log_refusal_group ON usage_log(refusal_group)
        WHERE refusal_group IS NOT NULL;
    "#,
    // 8: trust relationships (keyless CI): a CI platform's OIDC ID tokens, bound by their
    // claims, exchanged for access tokens. Fed like keys (a change reaches every server at
    // once); usage rows name the trust and the claims that matched.
    r#"
    CREATE TABLE trusts (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        issuer     TEXT NOT NULL,
        audience   TEXT NOT NULL,
        claims     TEXT NOT NULL,
        user_claim TEXT,
        users      TEXT NOT NULL,
        scope      TEXT NOT NULL,
        ip_ranges  TEXT NOT NULL,
        origins    TEXT NOT NULL,
        jwks_uri   TEXT,
        jwks       TEXT,
        max_age    INTEGER NOT NULL,
        created    INTEGER NOT NULL,
        expires    INTEGER
    );
    CREATE TRIGGER trusts_feed_i AFTER INSERT ON trusts WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('trust', NEW.id); END;
    CREATE TRIGGER trusts_feed_u AFTER UPDATE ON trusts WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('trust', NEW.id); END;
    CREATE TRIGGER trusts_feed_d AFTER DELETE ON trusts WHEN (SELECT quiet FROM feed_state) = 0
        BEGIN INSERT INTO changes(entity, id) VALUES ('trust', OLD.id); END;
    ALTER TABLE usage_log ADD COLUMN trust TEXT;
    ALTER TABLE usage_log ADD COLUMN claims TEXT;
    "#,
];

/// The same history for PostgreSQL, step for step (so that a schema version means the same
/// on both): `BIGINT` for times and booleans (row mapping is shared), `BYTEA` for bytes.
/// Feed triggers notify the channel every `serve` replica listens on (`postgres::CHANNEL`).
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
    // 6: the change feed (see MIGRATIONS[5]). Each feed row is written under the admin
    // advisory lock (see store/feed.rs), and notifies the replicas. The "C" indexes serve
    // id-prefix lookups whatever the database's collation.
    r#"
    DROP TRIGGER users_c ON users;
    DROP TRIGGER secrets_c ON secrets;
    DROP TRIGGER keys_c ON keys;
    DROP TRIGGER revoked_i ON revoked_tokens;
    DROP TRIGGER settings_c ON settings;
    DROP TRIGGER pats_i ON pats;
    DROP TRIGGER pats_u ON pats;
    DROP FUNCTION tokenauth_changed();
    DROP TABLE generation;
    CREATE TABLE changes (
        seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time   BIGINT NOT NULL DEFAULT CAST(extract(epoch FROM now()) AS BIGINT),
        entity TEXT NOT NULL,
        id     TEXT NOT NULL
    );
    CREATE INDEX changes_time ON changes(time);
    CREATE TABLE feed_state (
        id     BIGINT PRIMARY KEY CHECK (id = 1),
        pruned BIGINT NOT NULL,
        quiet  BIGINT NOT NULL
    );
    INSERT INTO feed_state VALUES (1, 0, 0);
    -- Arguments: the entity, and the column naming the row.
    CREATE FUNCTION tokenauth_feed() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        changed JSONB;
    BEGIN
        IF (SELECT quiet FROM feed_state) <> 0 THEN
            RETURN NULL;
        END IF;
        PERFORM pg_advisory_xact_lock(8389754676633777524);
        IF TG_OP = 'DELETE' THEN changed := to_jsonb(OLD); ELSE changed := to_jsonb(NEW); END IF;
        INSERT INTO changes(entity, id) VALUES (TG_ARGV[0], changed ->> TG_ARGV[1]);
        PERFORM pg_notify('tokenauth_changes', '');
        RETURN NULL;
    END $$;
    -- A rotation ends the user's live tokens: name them too.
    CREATE FUNCTION tokenauth_feed_rotation() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT quiet FROM feed_state) <> 0 THEN
            RETURN NULL;
        END IF;
        PERFORM pg_advisory_xact_lock(8389754676633777524);
        INSERT INTO changes(entity, id)
            SELECT 'pat', p.id FROM pats p WHERE p.user_name = NEW.user_name AND p.revoked IS NULL;
        RETURN NULL;
    END $$;
    CREATE TRIGGER users_feed AFTER INSERT OR UPDATE OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION tokenauth_feed('user', 'name');
    CREATE TRIGGER secrets_feed AFTER INSERT OR UPDATE OR DELETE ON secrets
        FOR EACH ROW EXECUTE FUNCTION tokenauth_feed('user', 'user_name');
    CREATE TRIGGER secrets_rotation AFTER UPDATE OF epoch ON secrets
        FOR EACH ROW WHEN (NEW.epoch <> OLD.epoch) EXECUTE FUNCTION tokenauth_feed_rotation();
    CREATE TRIGGER keys_feed AFTER INSERT OR UPDATE OR DELETE ON keys
        FOR EACH ROW EXECUTE FUNCTION tokenauth_feed('key', 'key_id');
    CREATE TRIGGER pats_feed AFTER INSERT OR DELETE ON pats
        FOR EACH ROW EXECUTE FUNCTION tokenauth_feed('pat', 'id');
    CREATE TRIGGER pats_feed_u
        AFTER UPDATE OF user_name, hash, scope, ip_ranges, origins, expires, revoked, secret_epoch
        ON pats FOR EACH ROW EXECUTE FUNCTION tokenauth_feed('pat', 'id');
    CREATE TRIGGER revoked_feed AFTER INSERT ON revoked_tokens
        FOR EACH ROW EXECUTE FUNCTION tokenauth_feed('jti', 'jti');
    CREATE TRIGGER settings_feed AFTER INSERT OR UPDATE OR DELETE ON settings
        FOR EACH ROW EXECUTE FUNCTION tokenauth_feed('setting', 'name');
    CREATE INDEX revoked_tokens_exp ON revoked_tokens(exp);
    CREATE INDEX keys_expires ON keys(expires);
    CREATE INDEX pats_expires ON pats(expires);
    CREATE INDEX keys_key_id_c ON keys (key_id COLLATE "C");
    CREATE INDEX pats_id_c ON pats (id COLLATE "C");
    "#,
    // 7: aggregated refusals (see MIGRATIONS[6]).
    r#"
    ALTER TABLE usage_log ADD COLUMN count BIGINT NOT NULL DEFAULT 1;
    ALTER TABLE usage_log ADD COLUMN refusal_group TEXT;
    CREATE UNIQUE INDEX usage_log_refusal_group ON usage_log(refusal_group)
        WHERE refusal_group IS NOT NULL;
    "#,
    // 8: trust relationships (see MIGRATIONS[7]).
    r#"
    CREATE TABLE trusts (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        issuer     TEXT NOT NULL,
        audience   TEXT NOT NULL,
        claims     TEXT NOT NULL,
        user_claim TEXT,
        users      TEXT NOT NULL,
        scope      TEXT NOT NULL,
        ip_ranges  TEXT NOT NULL,
        origins    TEXT NOT NULL,
        jwks_uri   TEXT,
        jwks       TEXT,
        max_age    BIGINT NOT NULL,
        created    BIGINT NOT NULL,
        expires    BIGINT
    );
    CREATE TRIGGER trusts_feed AFTER INSERT OR UPDATE OR DELETE ON trusts
        FOR EACH ROW EXECUTE FUNCTION tokenauth_feed('trust', 'id');
    ALTER TABLE usage_log ADD COLUMN trust TEXT;
    ALTER TABLE usage_log ADD COLUMN claims TEXT;
    "#,
];
