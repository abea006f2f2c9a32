//! The store's tests, each run on SQLite and on PostgreSQL.

use super::usage::USED_GRANT_MARGIN;
use super::*;
use crate::iprange;
use crate::scope::Scope;
use crate::secret::Secret;
use crate::testing::pat;
use rusqlite::Connection;

/// A new, empty store of one backend; `open` gives further connections to it.
enum Temp {
    Sqlite(tempfile::TempDir),
    Postgres(Box<postgres::ScratchDatabase>),
}

impl Temp {
    fn location(&self) -> Location {
        match self {
            Temp::Sqlite(d) => Location::Sqlite(d.path().join("t.db")),
            Temp::Postgres(db) => Location::parse(db.url.as_ref()).unwrap(),
        }
    }

    fn open(&self) -> Store {
        Store::connect(&self.location()).unwrap()
    }
}

/// Each test once per backend: `name::sqlite` and `name::postgres` (skipped, with a
/// notice, when no PostgreSQL answers).
macro_rules! both {
    ($(fn $name:ident($db:ident) $body:block)*) => {$(
        mod $name {
            use super::*;
            fn run($db: Temp) $body
            #[test]
            fn sqlite() {
                run(Temp::Sqlite(tempfile::tempdir().unwrap()));
            }
            #[test]
            fn postgres() {
                if let Some(db) = postgres::ScratchDatabase::create(stringify!($name)) {
                    run(Temp::Postgres(Box::new(db)));
                }
            }
        }
    )*};
}

both! {
    fn users_keys_and_tokens_read_back_as_written(db) {
        let mut store = db.open();
        let secret = Secret::new(vec![7; 32]);
        store.add_user("alice", &secret, 10).unwrap();
        assert!(matches!(
            store.add_user("alice", &secret, 11),
            Err(StoreError::UserExists(_))
        ));
        assert!(!store.ensure_user("alice", &secret, 11).unwrap());
        store.set_permission("alice", "impersonate", true).unwrap();
        store.set_disabled("alice", true).unwrap();
        let key = Key {
            key_id: "key-one-0001".into(),
            client_id: "client-1".into(),
            user: "alice".into(),
            title: "CI".into(),
            alg: "RS256".into(),
            public_key: "pem".into(),
            ip_ranges: iprange::parse("10.0.0.0/8").unwrap(),
            origins: vec!["https://a.example".into()],
            format: "tokenauth".into(),
            client_email: None,
            scope: Scope::Read,
            issued: 20,
            expires: Some(1_000),
            revoked: None,
            last_used: None,
        };
        store.add_key(&key).unwrap();
        store
            .edit_key(
                "key-one-0001",
                &KeyChange {
                    title: Some("CI bot".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        let found = store.key("key-one").unwrap();
        assert_eq!((found.title.as_str(), found.expires), ("CI bot", Some(1_000)));
        assert_eq!(found.ip_ranges, key.ip_ranges);
        assert_eq!(found.origins, key.origins);
        assert!(matches!(store.key("nope"), Err(StoreError::UnknownKey(_))));
        let user = store.user("alice").unwrap();
        assert!(user.disabled && user.may("impersonate") && user.active_keys == 1);
        assert!(matches!(
            store.remove_user("alice"),
            Err(StoreError::UserHasKeys { count: 1, .. })
        ));
        assert!(store.revoke_key("key-one-0001", 30).unwrap());
        assert!(!store.revoke_key("key-one-0001", 31).unwrap());
        assert_eq!(store.keys(Some("alice"), false).unwrap().len(), 0);
        assert_eq!(store.keys(None, true).unwrap()[0].revoked, Some(30));
        let pat = Pat {
            id: "pat-0001".into(),
            user: "alice".into(),
            hash: [3; 32],
            last4: "abcd".into(),
            description: "d".into(),
            scope: Scope::Read,
            ip_ranges: Vec::new(),
            origins: Vec::new(),
            created: 40,
            expires: None,
            revoked: None,
            secret_epoch: 0,
            last_used: None,
            ended: false,
        };
        store.add_pat(&pat).unwrap();
        assert!(!store.pat("pat-0001").unwrap().ended);
        store.rotate_secret("alice", &Secret::new(vec![8; 32]), 50).unwrap();
        // The rotation ended it: every read says so.
        assert!(store.pat("pat-0001").unwrap().ended);
        assert_eq!(store.pat("pat-0001").unwrap().state(50), "ended");
        assert!(store.pats(Some("alice"), false).unwrap()[0].ended);
        store
            .edit_pat(
                "pat-0001",
                &PatChange {
                    description: Some("new".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        let auth = store.user_auth("alice").unwrap().unwrap();
        assert_eq!((auth.epoch, auth.secret.expose()), (1, &[8u8; 32][..]));
        assert_eq!(store.pat("pat-").unwrap().description, "new");
        store.revoke_token("jti-1", 100, 60).unwrap();
        store.revoke_token("jti-1", 100, 60).unwrap();
        assert_eq!(store.revoked_tokens(60).unwrap(), vec![("jti-1".to_owned(), 100)]);
        assert!(store.token_revoked("jti-1", 60).unwrap());
        assert!(!store.token_revoked("jti-1", 101).unwrap());
        assert!(store.revoke_pat("pat-0001", 70).unwrap());
        store.remove_user("alice").unwrap();
        assert!(matches!(store.user("alice"), Err(StoreError::UnknownUser(_))));
        store.set_setting("token_uri", "https://a/token").unwrap();
        assert_eq!(store.setting("token_uri").unwrap().as_deref(), Some("https://a/token"));
    }

    fn every_admin_change_leaves_a_chained_audit_row(db) {
        let mut store = db.open();
        store.set_actor("tester@host", crate::clock::Clock::Fixed(100));
        store.add_user("alice", &Secret::new(vec![1; 32]), 1).unwrap();
        store.set_permission("alice", "impersonate", true).unwrap();
        store.rotate_secret("alice", &Secret::new(vec![2; 32]), 2).unwrap();
        store.set_setting("issuer", "https://a.example").unwrap();
        let rows = store
            .audit(&AuditFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            actions,
            ["settings.set", "user.rotate-secret", "user.grant", "user.add"]
        );
        assert!(rows.iter().all(|r| r.actor == "tester@host" && r.time == 100));
        let only = store
            .audit(&AuditFilter {
                actor: Some("tester".into()),
                action: Some("user".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(only.len(), 3);
        let verdict = store.verify_audit().unwrap();
        assert!(verdict.ok && verdict.rows == 4, "{verdict:?}");
    }

    fn a_store_of_a_newer_schema_is_refused(db) {
        let store = db.open();
        store.set_version_for_test(99);
        match Store::connect(&db.location()) {
            Err(StoreError::TooNew { found: 99, .. }) => {}
            other => panic!("not refused: {other:?}"),
        }
    }

    fn concurrent_admin_writers_all_succeed(db) {
        let location = db.location();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let location = location.clone();
                std::thread::spawn(move || {
                    let mut store = Store::connect(&location).unwrap();
                    for i in 0..10 {
                        let name = format!("u{t}-{i}");
                        store.add_user(&name, &Secret::new(vec![1; 32]), 1).unwrap();
                        store.set_permission(&name, "impersonate", true).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let users = db.open().users().unwrap();
        assert_eq!(users.len(), 40);
        assert!(users.iter().all(|u| u.may("impersonate")));
    }

    fn migrations_bring_an_empty_file_to_the_latest_version(db) {
        let store = db.open();
        assert_eq!(store.user_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    fn the_feed_names_each_change_and_not_usage_rows(db) {
        let mut store = db.open();
        let h0 = store.feed_head().unwrap();
        store.add_user("a", &Secret::new(vec![1; 32]), 1).unwrap();
        let h1 = store.feed_head().unwrap();
        assert!(h1 > h0);
        store
            .append_usage(
                &[UsageRow {
                    time: 1,
                    address: "127.0.0.1".into(),
                    ok: true,
                    ..Default::default()
                }], &[],
                &[],
                1,
                None,
            )
            .unwrap();
        assert_eq!(store.feed_head().unwrap(), h1);
        store.add_key(&key("k-1", "a")).unwrap();
        store.revoke_token("jti-9", 500, 1).unwrap();
        store.set_setting("issuer", "https://i.example").unwrap();
        let FeedRead::Batch(b) = store.read_feed(h1).unwrap() else {
            panic!("not behind");
        };
        assert_eq!(b.upto, store.feed_head().unwrap());
        assert!(!b.reset && b.users.is_empty());
        assert_eq!(b.key_ids, vec!["k-1".to_owned()]);
        assert_eq!(b.keys[0].client_id, "client-k-1");
        assert_eq!(b.revoked_tokens, vec![("jti-9".to_owned(), 500)]);
        assert!(b.settings.unwrap().contains(&("issuer".into(), "https://i.example".into())));
        // A removed user is named, and absent from the rows.
        store.remove_user("a").unwrap_err();
        store.revoke_key("k-1", 2).unwrap();
        store.remove_user("a").unwrap();
        let FeedRead::Batch(b) = store.read_feed(b.upto).unwrap() else {
            panic!("not behind");
        };
        assert_eq!(b.user_names, vec!["a".to_owned(), "a".to_owned()]);
        assert!(b.users.is_empty());
        assert_eq!(b.keys[0].revoked, Some(2));
    }

    fn trusts_read_back_edit_and_leave_through_the_feed(db) {
        let mut store = db.open();
        store.add_user("deploy", &Secret::new(vec![1; 32]), 1).unwrap();
        let t = crate::testing::trust("gh", "deploy", 5);
        assert!(matches!(
            store.add_trust(&Trust { users: vec!["nobody".into()], ..t.clone() }),
            Err(StoreError::UnknownUser(_))
        ));
        let head = store.feed_head().unwrap();
        store.add_trust(&t).unwrap();
        assert!(matches!(
            store.add_trust(&Trust { id: "trust-other".into(), ..t.clone() }),
            Err(StoreError::TrustExists(_))
        ));
        assert_eq!(store.trust("gh").unwrap(), t);
        assert_eq!(store.trust_by_id(&t.id).unwrap(), Some(t.clone()));
        assert!(matches!(store.trust("nope"), Err(StoreError::UnknownTrust(_))));
        let FeedRead::Batch(b) = store.read_feed(head).unwrap() else {
            panic!("not behind");
        };
        assert_eq!(b.trust_ids, vec![t.id.clone()]);
        assert_eq!(b.trusts, vec![t.clone()]);
        // A user a trust names stays.
        assert!(matches!(
            store.remove_user("deploy"),
            Err(StoreError::UserHasTrusts { .. })
        ));
        let edited = store
            .edit_trust(
                "gh",
                &TrustChange {
                    scope: Some(Scope::Write),
                    expires: Some(Some(99)),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!((edited.scope, edited.expires), (Scope::Write, Some(99)));
        let head = store.feed_head().unwrap();
        store.remove_trust("gh").unwrap();
        let FeedRead::Batch(b) = store.read_feed(head).unwrap() else {
            panic!("not behind");
        };
        assert_eq!(b.trust_ids, vec![t.id.clone()]);
        assert!(b.trusts.is_empty());
        let actions: Vec<String> = store
            .audit(&AuditFilter {
                target: Some("gh".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect();
        assert_eq!(actions, ["trust.remove", "trust.edit", "trust.add"]);
        store.remove_user("deploy").unwrap();
    }

    fn a_rotation_names_the_users_live_tokens(db) {
        let mut store = db.open();
        store.add_user("a", &Secret::new(vec![1; 32]), 1).unwrap();
        for (id, hash) in [("p-live", 1), ("p-gone", 2)] {
            store.add_pat(&pat(id, "a", hash)).unwrap();
        }
        store.revoke_pat("p-gone", 2).unwrap();
        let head = store.feed_head().unwrap();
        store.rotate_secret("a", &Secret::new(vec![2; 32]), 3).unwrap();
        let FeedRead::Batch(b) = store.read_feed(head).unwrap() else {
            panic!("not behind");
        };
        assert_eq!(b.users.len(), 1);
        assert_eq!(b.users[0].epoch, 1);
        let named: Vec<&str> = b.pats.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(named, ["p-live"]);
        assert_eq!(b.pats[0].secret_epoch, 0);
    }

    fn a_reader_behind_the_pruned_feed_is_told_to_load_everything(db) {
        let mut store = db.open();
        for name in ["a", "b", "c"] {
            store.add_user(name, &Secret::new(vec![1; 32]), 1).unwrap();
        }
        let head = store.feed_head().unwrap();
        assert_eq!(store.prune_feed(3_600).unwrap(), 0, "nothing is that old");
        // Everything older than now, but the newest entry, goes.
        assert!(store.prune_feed(-1).unwrap() >= 2);
        assert_eq!(store.feed_head().unwrap(), head);
        assert!(matches!(store.read_feed(0).unwrap(), FeedRead::Behind));
        // Entries up to the head's predecessor went: a reader there needs only the head.
        assert!(matches!(store.read_feed(head - 2).unwrap(), FeedRead::Behind));
        let FeedRead::Batch(b) = store.read_feed(head - 1).unwrap() else {
            panic!("a reader that needs only the head is not behind");
        };
        assert_eq!((b.entries, b.upto), (1, head));
        // A reader past the head (the store put back under it) loads everything too.
        assert!(matches!(store.read_feed(head + 5).unwrap(), FeedRead::Behind));
        // The numbering goes on after pruning.
        store.add_user("d", &Secret::new(vec![1; 32]), 1).unwrap();
        assert!(store.feed_head().unwrap() > head);
    }

    fn id_prefixes_are_ranges_that_sort_bytewise(db) {
        let mut store = db.open();
        store.add_user("a", &Secret::new(vec![1; 32]), 1).unwrap();
        // '-' and '_' sort by their bytes, whatever the database's collation.
        for id in ["Ab_c1", "Ab-c2", "Ab_cd3", "Abc4"] {
            store.add_key(&key(id, "a")).unwrap();
        }
        assert_eq!(store.key("Ab_c").unwrap_err().to_string(), StoreError::AmbiguousKey("Ab_c".into()).to_string());
        assert_eq!(store.key("Ab_cd").unwrap().key_id, "Ab_cd3");
        assert_eq!(store.key("Ab-c").unwrap().key_id, "Ab-c2");
        assert_eq!(store.key("Ab_c1").unwrap().key_id, "Ab_c1");
        assert!(matches!(store.key("ab_c"), Err(StoreError::UnknownKey(_))));
        // Under 4 characters: the whole id only.
        assert!(matches!(store.key("Abc"), Err(StoreError::UnknownKey(_))));
        store.add_pat(&pat("f00d-1", "a", 1)).unwrap();
        store.add_pat(&pat("f00d_2", "a", 2)).unwrap();
        assert_eq!(store.pat("f00d-").unwrap().id, "f00d-1");
        assert!(matches!(store.pat("f00d"), Err(StoreError::AmbiguousPat(_))));
    }

    fn a_copy_goes_in_batches_and_tells_servers_on_the_target_to_load_everything(db) {
        let mut source = db.open();
        source.add_user("a", &Secret::new(vec![1; 32]), 1).unwrap();
        // More rows than one INSERT takes.
        let rows: Vec<UsageRow> = (0..1_500)
            .map(|i| UsageRow {
                time: i,
                address: "127.0.0.1".into(),
                key_id: Some(format!("k{i}")),
                ok: true,
                ..Default::default()
            })
            .collect();
        source.append_usage(&rows, &[], &[], 1, None).unwrap();
        source.add_key(&key("k-1", "a")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut target = Store::open(&dir.path().join("copy.db")).unwrap();
        target.add_user("old", &Secret::new(vec![9; 32]), 1).unwrap();
        let before = target.feed_head().unwrap();
        assert!(matches!(source.copy_into(&mut target, false), Err(StoreError::NotEmpty(_))));
        let report = source.copy_into(&mut target, true).unwrap();
        let rows_of = |t: &str| report.tables.iter().find(|c| c.table == t).unwrap().rows;
        assert_eq!((rows_of("usage_log"), rows_of("users"), rows_of("keys")), (1_500, 1, 1));
        assert!(target.user("old").is_err());
        assert_eq!(target.user_auth("a").unwrap().unwrap().secret.expose(), &[1; 32]);
        // One entry, which sends readers to a full load; the copied rows made none.
        assert_eq!(target.feed_head().unwrap(), before + 1);
        let FeedRead::Batch(b) = target.read_feed(before).unwrap() else {
            panic!("not behind");
        };
        assert!(b.reset);
        // The copy's triggers are on again: a user and its secret.
        target.add_user("b", &Secret::new(vec![1; 32]), 1).unwrap();
        assert_eq!(target.feed_head().unwrap(), before + 3);
    }

    fn pruning_keeps_each_keys_newest_row(db) {
        let mut store = db.open();
        let row = |t, k: &str| UsageRow {
            time: t,
            key_id: Some(k.into()),
            address: "127.0.0.1".into(),
            ok: true,
            ..Default::default()
        };
        store
            .append_usage(
                &[row(1, "a"), row(2, "a"), row(3, "b"), row(100, "b")], &[],
                &[],
                100,
                None,
            )
            .unwrap();
        store.append_usage(&[], &[], &[], 100, Some(50)).unwrap();
        let left = store
            .usage(&UsageFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let times: Vec<i64> = left.iter().map(|r| r.time).collect();
        assert_eq!(times, vec![100, 2]);
    }

    fn counted_refusals_add_to_their_groups_row_across_batches_and_writers(db) {
        let mut store = db.open();
        let mut other = db.open();
        let refused = |t, group: &str, n, reason: &str| UsageRow {
            time: t,
            address: "192.0.2.1".into(),
            reason: Some(reason.into()),
            subject: Some(format!("first at {t}")),
            count: n,
            refusal_group: Some(group.into()),
            ..Default::default()
        };
        store
            .append_usage(&[], &[refused(10, "0:a", 3, "Invalid signature")], &[], 10, None)
            .unwrap();
        other
            .append_usage(
                &[],
                &[refused(11, "0:a", 4, "Invalid signature"), refused(12, "0:b", 1, "No associated key found")],
                &[],
                12,
                None,
            )
            .unwrap();
        let rows = store
            .usage(&UsageFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} ×{} ok={} {:?} {:?}",
                    r.time, r.count, r.ok, r.reason, r.subject
                )
            })
            .collect();
        // The group's row keeps its first refusal's details; later ones only add.
        assert_eq!(
            got,
            [
                r#"12 ×1 ok=false Some("No associated key found") Some("first at 12")"#,
                r#"10 ×7 ok=false Some("Invalid signature") Some("first at 10")"#,
            ]
        );
    }

    fn used_grants_are_pruned_only_well_after_they_expire(db) {
        let mut store = db.open();
        store
            .append_usage(
                &[
                    grant_row(1, "c", "old", 10),
                    grant_row(1, "c", "new", 1_000),
                ], &[],
                &[],
                1,
                None,
            )
            .unwrap();
        store
            .append_usage(&[], &[], &[], 10 + USED_GRANT_MARGIN, Some(0))
            .unwrap();
        assert_eq!(store.live_used_grants(0).unwrap().len(), 2);
        store
            .append_usage(&[], &[], &[], 11 + USED_GRANT_MARGIN, Some(0))
            .unwrap();
        let left = store.live_used_grants(0).unwrap();
        assert_eq!(
            left,
            vec![GrantUse {
                key: replay_key("c", Some("new"), &[]),
                exp: 1_000
            }]
        );
    }

    fn a_grant_is_used_once_across_connections_and_batches(db) {
        let mut a = db.open();
        let mut b = db.open();
        // The same grant twice in one batch, then again from another connection.
        let written = a
            .append_usage(
                &[
                    grant_row(1, "c1", "x", 100),
                    grant_row(2, "c1", "x", 100),
                    // The same jti under another client is another grant.
                    grant_row(3, "c2", "x", 100),
                ], &[],
                &[],
                1,
                None,
            )
            .unwrap();
        assert_eq!(written, vec![true, false, true]);
        let again = b
            .append_usage(
                &[grant_row(4, "c1", "x", 100), grant_row(5, "c1", "y", 100)], &[],
                &[],
                4,
                None,
            )
            .unwrap();
        assert_eq!(again, vec![false, true]);
        let rows = a
            .usage(&UsageFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let refused: Vec<(i64, Option<&str>)> = rows
            .iter()
            .filter(|r| !r.ok)
            .map(|r| (r.time, r.reason.as_deref()))
            .collect();
        assert_eq!(
            refused,
            vec![
                (4, Some("Grant has already been used (jti replayed)")),
                (2, Some("Grant has already been used (jti replayed)"))
            ]
        );
        assert_eq!(a.live_used_grants(1).unwrap().len(), 3);
    }
}

/// A key row with these ids and placeholder material, for tests that need keys in a store.
pub(crate) fn key(id: &str, user: &str) -> Key {
    Key {
        key_id: id.into(),
        client_id: format!("client-{id}"),
        user: user.into(),
        title: String::new(),
        alg: "EdDSA".into(),
        public_key: "pem".into(),
        ip_ranges: Vec::new(),
        origins: Vec::new(),
        format: "tokenauth".into(),
        client_email: None,
        scope: Scope::Read,
        issued: 1,
        expires: None,
        revoked: None,
        last_used: None,
    }
}

fn grant_row(time: i64, client: &str, jti: &str, exp: i64) -> UsageRow {
    UsageRow {
        time,
        key_id: Some(format!("key-{client}")),
        address: "127.0.0.1".into(),
        ok: true,
        token_jti: Some(format!("token-{time}")),
        grant_jti: Some(jti.to_owned()),
        grant_use: Some(GrantUse {
            key: replay_key(client, Some(jti), &[]),
            exp,
        }),
        ..Default::default()
    }
}

#[test]
fn replay_keys_tell_clients_jtis_and_signatures_apart() {
    let k = replay_key("c", Some("x"), &[]);
    assert_eq!(k, replay_key("c", Some("x"), b"ignored"));
    assert_ne!(k, replay_key("d", Some("x"), &[]));
    assert_ne!(k, replay_key("c", Some("y"), &[]));
    assert_ne!(replay_key("c", None, b"x"), k);
    assert_ne!(replay_key("c", None, b"x"), replay_key("c", None, b"y"));
}

/// A store written before grants were kept: the grants its issuances used stay used.
#[test]
fn upgrading_keeps_the_grants_already_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO keys(key_id, client_id, user_name, alg, public_key, scope, issued)
                 VALUES ('k', 'c', 'u', 'RS256', 'pem', 'read', 0);
             INSERT INTO usage_log(time, key_id, address, ok, grant_jti, grant_exp)
                 VALUES (1, 'k', '127.0.0.1', 1, 'j', 500), (2, 'k', '127.0.0.1', 0, 'r', 500);",
        )
        .unwrap();
    }
    // As tokenauth creates stores: one open to other users is refused.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.live_used_grants(0).unwrap(),
        vec![GrantUse {
            key: replay_key("c", Some("j"), &[]),
            exp: 500
        }]
    );
}

/// A standby, or a database set `default_transaction_read_only`: writes are refused as
/// unwritable (the server answers 503 and counts it), naming the fix.
#[test]
fn a_read_only_postgresql_is_unwritable_and_names_the_primary_as_the_fix() {
    let Some(db) = postgres::ScratchDatabase::create("read_only_postgresql") else {
        return;
    };
    let mut store = Store::connect(&Location::parse(db.url.as_ref()).unwrap()).unwrap();
    store
        .add_user("alice", &Secret::new(vec![7; 32]), 10)
        .unwrap();
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{sep}options=-cdefault_transaction_read_only%3Don",
        db.url
    );
    let mut read_only = Store::connect(&Location::parse(url.as_ref()).unwrap()).unwrap();
    let e = read_only
        .add_user("bob", &Secret::new(vec![8; 32]), 11)
        .unwrap_err();
    assert!(e.is_unwritable(), "{e:?}");
    assert!(e.to_string().contains("takes no writes"), "{e}");
    assert!(e.to_string().contains("point --db at the primary"), "{e}");
    assert!(matches!(store.user("bob"), Err(StoreError::UnknownUser(_))));
}

/// A read command pointed at a mistyped path creates neither the file nor its folder.
#[test]
fn connecting_to_an_existing_store_creates_nothing_when_it_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo").join("tokenauth.db");
    let location = Location::Sqlite(path.clone());
    assert!(matches!(
        Store::connect_existing(&location),
        Err(StoreError::Missing { path: p }) if p == path
    ));
    assert!(!dir.path().join("typo").exists());
    drop(Store::connect(&location).unwrap());
    Store::connect_existing(&location).unwrap();
}

both! {
    fn active_keys_are_those_neither_revoked_nor_expired(db) {
        let mut store = db.open();
        store.add_user("alice", &Secret::new(vec![7; 32]), 1).unwrap();
        assert_eq!(store.count_active_keys(100).unwrap(), 0);
        store.add_key(&key("k1", "alice")).unwrap();
        store.add_key(&Key { expires: Some(100), ..key("k2", "alice") }).unwrap();
        store.add_key(&key("k3", "alice")).unwrap();
        store.revoke_key("k3", 50).unwrap();
        assert_eq!(store.count_active_keys(99).unwrap(), 2);
        assert_eq!(store.count_active_keys(100).unwrap(), 1);
    }
}

both! {
    fn ids_with_a_prefix_are_listed_from_both_tables_in_order_and_counted(db) {
        let mut store = db.open();
        store.add_user("alice", &Secret::new(vec![7; 32]), 1).unwrap();
        for id in ["Ab_c3", "Ab_c1", "Ab-c2", "Xy-z9"] {
            store.add_key(&key(id, "alice")).unwrap();
        }
        assert_eq!(store.ids_with_prefix("Ab_c", 1).unwrap(), (vec!["Ab_c1".to_owned()], 2));
        assert_eq!(
            store.ids_with_prefix("Ab_c…", 10).unwrap(),
            (vec!["Ab_c1".to_owned(), "Ab_c3".to_owned()], 2)
        );
        assert_eq!(store.ids_with_prefix("Qq", 10).unwrap(), (vec![], 0));
    }
}
