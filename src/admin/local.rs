//! Admin operations on a store this process opened: what the CLI does without --server and
//! what the server's admin API does for its callers. Every change is audited by the store,
//! under the actor set on it.

use std::collections::BTreeMap;

use rand::rngs::OsRng;

use super::*;
use crate::access_token::TRUST_ID_PREFIX;
use crate::clock::{self, Clock};
use crate::iprange;
use crate::oidc::{self, KeySet};
use crate::pat;
use crate::public_key::PublicKey;
use crate::registry::DEFAULT_TOKEN_URI;
use crate::secret::Secret;
use crate::service_key::{self, KeyFile};
use crate::store::{KeyChange, PatChange, Store, TrustChange, UsageFilter};
use crate::text::printable;

pub struct Local {
    pub store: Store,
    pub clock: Clock,
}

fn invalid(e: impl std::fmt::Display) -> AdminError {
    AdminError::Invalid(e.to_string())
}

fn parse_ranges(text: Option<&str>) -> Result<Vec<ipnet::IpNet>> {
    iprange::parse(text.unwrap_or("")).map_err(|e| invalid(format!("invalid --ip-range: {e}")))
}

fn parse_expires(text: Option<&str>, now: i64) -> Result<Option<i64>> {
    crate::validate::parse_expires(text, now).map_err(invalid)
}

/// Titles and descriptions are free text, within reason.
fn check_length(text: &str, what: &str) -> Result<()> {
    if text.chars().count() > 1024 {
        return Err(invalid(format!(
            "the {what} is longer than 1024 characters"
        )));
    }
    Ok(())
}

fn parse_origins(values: &[String]) -> Result<Vec<String>> {
    crate::validate::parse_origins(values).map_err(invalid)
}

fn check_user_name(name: &str) -> Result<()> {
    crate::validate::check_user_name(name).map_err(invalid)
}

pub fn key_view(key: Key, now: i64) -> KeyView {
    KeyView {
        state: key.state(now).to_owned(),
        key,
    }
}

pub fn pat_view(pat: Pat, now: i64) -> PatView {
    PatView {
        state: pat.state(now).to_owned(),
        token: format!("{}…{}", pat::PREFIX, pat.last4),
        pat,
    }
}

pub fn trust_view(mut trust: Trust, now: i64) -> TrustView {
    let jwks_keys = trust
        .jwks
        .take()
        .map(|text| KeySet::parse(&text).map_or(0, |k| k.keys().len()));
    TrustView {
        state: trust.state(now).to_owned(),
        warnings: oidc::org_wide_only(&trust.claims).into_iter().collect(),
        jwks_keys,
        trust,
    }
}

/// How old an ID token may be unless the admin says otherwise: CI platforms' tokens are
/// exchanged seconds after they are issued and live minutes.
const DEFAULT_MAX_AGE: i64 = 3600;

/// A JWKS document of a few keys is a few KiB; every server loads every trust's.
const MAX_JWKS_BYTES: usize = 64 * 1024;

/// Trust names are typed in commands and sent as `client_id` by CI jobs: plain words only.
fn check_trust_name(name: &str) -> Result<()> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    // A leading '-' would read as a flag in every later command.
    if name.is_empty() || name.len() > 64 || !plain || name.starts_with('-') {
        return Err(invalid(format!(
            "invalid trust name '{}': use 1 to 64 letters, digits, '.', '_' or '-', not starting with '-' (e.g. gh-deploy)",
            printable(name)
        )));
    }
    Ok(())
}

fn check_issuer_url(url: &str, flag: &str) -> Result<()> {
    // The URL parser drops tabs and line breaks, and `iss` is compared as written.
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!(
            "{flag}: '{}' holds spaces or control characters; give the URL exactly as the issuer's tokens carry it",
            printable(url)
        )));
    }
    oidc::https_or_loopback(url)
        .map(drop)
        .map_err(|e| invalid(format!("{flag}: {e}")))
}

fn check_audience(audience: &str) -> Result<()> {
    if audience.is_empty() {
        return Err(invalid(
            "--audience is empty; give the aud the platform puts in its ID tokens for this server, e.g. https://auth.example.com",
        ));
    }
    if audience.chars().count() > 512 {
        return Err(invalid(format!(
            "--audience '{}…' is longer than 512 characters",
            printable(audience)
        )));
    }
    Ok(())
}

/// `--claim NAME=VALUE` values as a set. A name given twice is refused rather than letting
/// one value silently win.
fn parse_claims(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut claims: BTreeMap<String, String> = BTreeMap::new();
    for arg in args {
        let (name, value) = oidc::parse_claim(arg).map_err(invalid)?;
        if let Some(first) = claims.get(&name) {
            return Err(invalid(format!(
                "--claim {0} is given twice ('{0}={1}' and '{0}={2}'); a claim is bound to one value: use a '*' pattern to allow several",
                printable(&name),
                printable(first),
                printable(&value)
            )));
        }
        claims.insert(name, value);
    }
    Ok(claims)
}

/// The rules of `oidc::check_rules`; when the set binds nothing, naming what made it so.
fn check_claims(claims: &BTreeMap<String, String>, removed: &[String]) -> Result<()> {
    oidc::check_rules(claims).map_err(|e| {
        let wild = |p: &String| !p.is_empty() && p.bytes().all(|b| b == b'*');
        if !claims.values().all(wild) {
            return invalid(e);
        }
        let culprit = if !claims.is_empty() {
            let given: Vec<String> = claims
                .iter()
                .map(|(n, p)| format!("--claim {}={}", printable(n), printable(p)))
                .collect();
            format!("{} binds nothing", given.join(" "))
        } else if !removed.is_empty() {
            let flags: Vec<String> = removed
                .iter()
                .map(|n| format!("--remove-claim {}", printable(n)))
                .collect();
            format!("{} leaves no bound claim", flags.join(" "))
        } else {
            return invalid(e);
        };
        invalid(format!("{culprit}: {e}"))
    })
}

/// Without a user claim a trust's tokens are for one user; with one, for whichever of its
/// users the claim names.
fn check_users(user_claim: Option<&str>, users: &[String]) -> Result<()> {
    for (i, user) in users.iter().enumerate() {
        check_user_name(user)?;
        if users[..i].contains(user) {
            return Err(invalid(format!(
                "--user {} is given twice",
                printable(user)
            )));
        }
    }
    match user_claim {
        None if users.is_empty() => Err(invalid(
            "a trust needs --user USER: the user its access tokens are for (or --user-claim CLAIM and the users that claim may name, one --user each)",
        )),
        None if users.len() > 1 => Err(invalid(format!(
            "{} users ({}) without --user-claim: a trust without a user claim gets tokens for exactly one user; give one --user, or --user-claim CLAIM to take the user from that claim, limited to these users",
            users.len(),
            printable(&users.join(", "))
        ))),
        Some("") => Err(invalid(
            "--user-claim is empty; give the claim that names the user, e.g. --user-claim actor",
        )),
        Some(claim) if users.is_empty() => Err(invalid(format!(
            "--user-claim {} needs the users it may name, one --user each",
            printable(claim)
        ))),
        _ => Ok(()),
    }
}

fn parse_max_age(text: Option<&str>) -> Result<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    let secs =
        clock::parse_duration(text).map_err(|e| invalid(format!("invalid --max-age: {e}")))?;
    if !(1..=DAY).contains(&secs) {
        return Err(invalid(format!(
            "--max-age {} is outside 1s to 24h; CI platforms' ID tokens are exchanged minutes after they are issued (the default is 1h)",
            printable(text)
        )));
    }
    Ok(Some(secs))
}

/// A JWKS document with at least one usable key.
fn check_jwks(text: &str) -> Result<()> {
    if text.len() > MAX_JWKS_BYTES {
        return Err(invalid(format!(
            "--jwks-file: the JWKS is {} bytes; at most {MAX_JWKS_BYTES} are accepted",
            text.len()
        )));
    }
    KeySet::parse(text)
        .map(drop)
        .map_err(|e| invalid(format!("--jwks-file: {e}")))
}

/// 64 random bits, hex: what commands name a token by.
fn new_pat_id() -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut OsRng, &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A user name as it may stand in a file name or an address.
pub fn safe_name(user: &str) -> String {
    user.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

const DAY: i64 = 86_400;

impl Local {
    pub fn new(store: Store, clock: Clock) -> Local {
        Local { store, clock }
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// A key by id or unique prefix, or a token by id or prefix: its exact id.
    fn key_or_token_id(&self, id: &str) -> Result<String> {
        match self.store.key(id) {
            Ok(k) => Ok(k.key_id),
            Err(StoreError::UnknownKey(_)) => Ok(self.store.pat(id).map_err(|_| {
                AdminError::NotFound(format!(
                    "no key or personal access token with id '{id}'; see `tokenauth list-keys --all` and `tokenauth token list --all`"
                ))
            })?.id),
            Err(e) => Err(e.into()),
        }
    }

    /// What `audit --target` matches: the target as given when rows record it (user, trust
    /// and setting names, full ids, of deleted keys too); else, when it is a key or token id
    /// or a unique prefix of one (as edit-key takes them), that whole id.
    fn audit_target(&self, target: &str) -> Result<String> {
        let recorded = crate::store::AuditFilter {
            since: None,
            actor: None,
            target: Some(target.to_owned()),
            action: None,
            limit: 1,
        };
        if !self.store.audit(&recorded)?.is_empty() {
            return Ok(target.to_owned());
        }
        match self.key_or_token_id(target) {
            Ok(id) => Ok(id),
            Err(AdminError::NotFound(_)) => Ok(target.to_owned()),
            Err(AdminError::Invalid(_)) => {
                // The resolver says only that there are several; the user needs to see them
                // to pick one.
                let (ids, count) = self.store.ids_with_prefix(target, 10)?;
                let more = count - ids.len() as i64;
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                Err(invalid(format!(
                    "target '{}' is the start of several ids: {}{more}; give more characters",
                    printable(target),
                    ids.join(", ")
                )))
            }
            Err(e) => Err(e),
        }
    }

    fn ensure_user(&mut self, name: &str, now: i64) -> Result<bool> {
        Ok(self
            .store
            .ensure_user(name, &Secret::generate(&mut OsRng), now)?)
    }
}

impl Admin for Local {
    fn users(&mut self) -> Result<Vec<User>> {
        Ok(self.store.users()?)
    }

    fn user(&mut self, name: &str) -> Result<User> {
        Ok(self.store.user(name)?)
    }

    fn add_user(&mut self, name: &str) -> Result<User> {
        check_user_name(name)?;
        let now = self.now();
        self.store
            .add_user(name, &Secret::generate(&mut OsRng), now)?;
        Ok(self.store.user(name)?)
    }

    fn remove_user(&mut self, name: &str) -> Result<()> {
        Ok(self.store.remove_user(name)?)
    }

    fn set_permission(&mut self, name: &str, permission: &str, granted: bool) -> Result<User> {
        if !PERMISSIONS.contains(&permission) {
            return Err(invalid(format!(
                "unknown permission '{permission}'; permissions are {}",
                PERMISSIONS.join(", ")
            )));
        }
        self.store.set_permission(name, permission, granted)?;
        Ok(self.store.user(name)?)
    }

    fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<User> {
        self.store.set_disabled(name, disabled)?;
        Ok(self.store.user(name)?)
    }

    fn rotate_secret(&mut self, user: Option<&str>) -> Result<Vec<String>> {
        let users: Vec<String> = match user {
            Some(u) => vec![self.store.user(u)?.name],
            None => self.store.users()?.into_iter().map(|u| u.name).collect(),
        };
        let now = self.now();
        for u in &users {
            self.store
                .rotate_secret(u, &Secret::generate(&mut OsRng), now)?;
        }
        Ok(users)
    }

    fn issue_key(&mut self, req: &IssueKey) -> Result<Issued> {
        check_user_name(&req.user)?;
        let format = req.format.unwrap_or(Format::Tokenauth);
        if format == Format::Google && req.public_key.is_some() {
            return Err(invalid(
                "--format google needs the private key in the file (google-auth reads it there); \
                 drop --public-key, or use --format tokenauth",
            ));
        }
        if format == Format::Google && req.alg.is_some_and(|a| a != Alg::RS256) {
            return Err(invalid(
                "--format google keys are RS256: Google's libraries sign service-account grants with RSA",
            ));
        }
        let bits = req.bits.unwrap_or(2048);
        if ![2048, 3072, 4096].contains(&bits) {
            return Err(invalid(format!(
                "RSA key size {bits} is not offered; use 2048, 3072 or 4096"
            )));
        }
        if req.public_key.is_some() && (req.bits.is_some() || req.pkcs8) {
            return Err(invalid(
                "bits and pkcs8 apply to generated keys, not to a public key the client brings",
            ));
        }
        check_length(&req.title, "title")?;
        let ip_ranges = parse_ranges(req.ip_range.as_deref())?;
        let now = self.now();
        let expires = parse_expires(req.expires.as_deref(), now)?;
        let origins = parse_origins(&req.origins)?;
        let token_uri = self
            .store
            .setting("token_uri")?
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        // The public key (and, unless the client brought its own, the private one) first: a
        // key that cannot be used must not reach the store.
        let (public, private_pem) = match &req.public_key {
            Some(text) => {
                let public =
                    PublicKey::parse(text).map_err(|e| invalid(format!("--public-key: {e}")))?;
                if let Some(alg) = req.alg.filter(|a| *a != public.alg) {
                    return Err(invalid(format!(
                        "--alg {alg} does not match the public key, which is {}",
                        public.alg
                    )));
                }
                (public, None)
            }
            None => {
                let alg = req.alg.unwrap_or(Alg::RS256);
                // Google's libraries read PKCS#8 only.
                let pkcs8 = req.pkcs8 || format == Format::Google;
                let generated = service_key::generate(alg, bits, pkcs8, &mut OsRng)?;
                (generated.key, Some(generated.private_pem))
            }
        };
        if let Ok(existing) = self.store.key(&public.key_id()) {
            return Err(AdminError::Conflict(format!(
                "this public key is already key {} of user {}; each key pair is registered once",
                existing.key_id, existing.user
            )));
        }
        // Only now, when the key is known to be good: a refused key leaves no user behind.
        let user_created = self.ensure_user(&req.user, now)?;
        let client_id = service_key::new_client_id(&mut OsRng);
        let client_email = (format == Format::Google).then(|| {
            let issuer = self
                .store
                .setting("issuer")
                .ok()
                .flatten()
                .unwrap_or_else(|| crate::registry::default_issuer(&token_uri));
            let host = url::Url::parse(&issuer)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| "tokenauth".to_owned());
            format!("{}.{}@{host}", safe_name(&req.user), &client_id[..8])
        });
        let key = Key {
            key_id: public.key_id(),
            client_id,
            user: req.user.clone(),
            title: req.title.clone(),
            alg: public.alg.as_str().to_owned(),
            public_key: public.pem(),
            ip_ranges,
            origins,
            format: format.as_str().to_owned(),
            client_email,
            scope: req.scope.unwrap_or(Scope::Read),
            issued: now,
            expires,
            revoked: None,
            last_used: None,
        };
        let file = KeyFile {
            key_id: key.key_id.clone(),
            client_id: key.client_id.clone(),
            user_id: Some(key.user.clone()),
            issued: clock::rfc3339(now),
            token_uri,
            private_key: private_pem,
            private_key_file: None,
            private_key_from: None,
            alg: public.alg,
            format,
            name: String::new(),
        };
        let key_file = file.to_json(key.client_email.as_deref());
        self.store.add_key(&key)?;
        Ok(Issued {
            key: key_view(key, now),
            key_file,
            user_created,
        })
    }

    fn keys(&mut self, f: &KeyFilter) -> Result<Vec<KeyView>> {
        if let Some(u) = &f.user {
            self.store.user(u)?;
        }
        let now = self.now();
        let with_revoked = f.all || f.state == Some(KeyState::Revoked);
        let keys = self.store.keys(f.user.as_deref(), with_revoked)?;
        Ok(keys
            .into_iter()
            .map(|k| key_view(k, now))
            .filter(|v| {
                let k = &v.key;
                f.state.is_none_or(|s| v.state == s.as_str())
                    && f.scope.is_none_or(|s| k.scope == s)
                    && f.expiring_within.is_none_or(|w| {
                        k.expires
                            .is_some_and(|e| e > now && e <= now.saturating_add(w))
                    })
                    && f.unused_for
                        .is_none_or(|u| k.last_used.unwrap_or(k.issued) <= now.saturating_sub(u))
            })
            .collect())
    }

    fn key(&mut self, id: &str) -> Result<KeyView> {
        let now = self.now();
        Ok(key_view(self.store.key(id)?, now))
    }

    fn edit_key(&mut self, id: &str, change: &EditKey) -> Result<KeyView> {
        if change.title.is_none() && change.ip_range.is_none() && change.origins.is_none() {
            return Err(invalid(
                "nothing to change; pass --title, --ip-range, --no-ip-range, --origin or --no-origin",
            ));
        }
        if let Some(t) = &change.title {
            check_length(t, "title")?;
        }
        let ip_ranges = change
            .ip_range
            .as_deref()
            .map(|r| parse_ranges(Some(r)))
            .transpose()?;
        let origins = change.origins.as_deref().map(parse_origins).transpose()?;
        let key_id = self.store.key(id)?.key_id;
        self.store.edit_key(
            &key_id,
            &KeyChange {
                title: change.title.clone(),
                ip_ranges,
                origins,
            },
        )?;
        self.key(&key_id)
    }

    fn revoke_key(&mut self, id: &str) -> Result<Revoked<KeyView>> {
        let key_id = self.store.key(id)?.key_id;
        let now = self.now();
        let revoked = self.store.revoke_key(&key_id, now)?;
        Ok(Revoked {
            revoked_now: revoked,
            item: self.key(&key_id)?,
        })
    }

    fn create_pat(&mut self, req: &CreatePat) -> Result<CreatedPat> {
        check_user_name(&req.user)?;
        check_length(&req.description, "description")?;
        let now = self.now();
        let expires = parse_expires(req.expires.as_deref(), now)?;
        let ip_ranges = parse_ranges(req.ip_range.as_deref())?;
        let origins = parse_origins(&req.origins)?;
        let user_created = self.ensure_user(&req.user, now)?;
        let token = pat::generate(&mut OsRng);
        let pat = Pat {
            id: new_pat_id(),
            user: req.user.clone(),
            hash: pat::hash(token.expose()),
            last4: pat::last4(token.expose()),
            description: req.description.clone(),
            scope: req.scope.unwrap_or(Scope::Read),
            ip_ranges,
            origins,
            created: now,
            expires,
            revoked: None,
            secret_epoch: 0,
            last_used: None,
            ended: false,
        };
        self.store.add_pat(&pat)?;
        Ok(CreatedPat {
            pat,
            token,
            user_created,
        })
    }

    fn pats(&mut self, f: &PatFilter) -> Result<Vec<PatView>> {
        if let Some(u) = &f.user {
            self.store.user(u)?;
        }
        let now = self.now();
        Ok(self
            .store
            .pats(f.user.as_deref(), f.all)?
            .into_iter()
            .map(|p| pat_view(p, now))
            .collect())
    }

    fn pat(&mut self, id: &str) -> Result<PatView> {
        let now = self.now();
        Ok(pat_view(self.store.pat(id)?, now))
    }

    fn edit_pat(&mut self, id: &str, change: &EditPat) -> Result<PatView> {
        if change.description.is_none()
            && change.scope.is_none()
            && change.ip_range.is_none()
            && change.origins.is_none()
        {
            return Err(invalid(
                "nothing to change; pass --description, --scope, --ip-range, --no-ip-range, --origin or --no-origin",
            ));
        }
        if let Some(d) = &change.description {
            check_length(d, "description")?;
        }
        let ip_ranges = change
            .ip_range
            .as_deref()
            .map(|r| parse_ranges(Some(r)))
            .transpose()?;
        let origins = change.origins.as_deref().map(parse_origins).transpose()?;
        let id = self.store.pat(id)?.id;
        self.store.edit_pat(
            &id,
            &PatChange {
                description: change.description.clone(),
                scope: change.scope,
                ip_ranges,
                origins,
            },
        )?;
        self.pat(&id)
    }

    fn revoke_pat(&mut self, id: &str) -> Result<Revoked<PatView>> {
        let id = self.store.pat(id)?.id;
        let now = self.now();
        let revoked = self.store.revoke_pat(&id, now)?;
        Ok(Revoked {
            revoked_now: revoked,
            item: self.pat(&id)?,
        })
    }

    fn add_trust(&mut self, req: &AddTrust) -> Result<TrustView> {
        check_trust_name(&req.name)?;
        check_issuer_url(&req.issuer, "--issuer")?;
        check_audience(&req.audience)?;
        let claims = parse_claims(&req.claims)?;
        check_claims(&claims, &[])?;
        check_users(req.user_claim.as_deref(), &req.users)?;
        let ip_ranges = parse_ranges(req.ip_range.as_deref())?;
        let origins = parse_origins(&req.origins)?;
        let now = self.now();
        let expires = parse_expires(req.expires.as_deref(), now)?;
        let max_age = parse_max_age(req.max_age.as_deref())?.unwrap_or(DEFAULT_MAX_AGE);
        if req.jwks_uri.is_some() && req.jwks.is_some() {
            return Err(invalid(
                "--jwks-uri and --jwks-file are two sources of the issuer's keys; give one",
            ));
        }
        if let Some(uri) = &req.jwks_uri {
            check_issuer_url(uri, "--jwks-uri")?;
        }
        if let Some(text) = &req.jwks {
            check_jwks(text)?;
        }
        let trust = Trust {
            id: format!(
                "{TRUST_ID_PREFIX}{}",
                service_key::new_client_id(&mut OsRng)
            ),
            name: req.name.clone(),
            issuer: req.issuer.clone(),
            audience: req.audience.clone(),
            claims,
            user_claim: req.user_claim.clone(),
            users: req.users.clone(),
            scope: req.scope.unwrap_or(Scope::Read),
            ip_ranges,
            origins,
            jwks_uri: req.jwks_uri.clone(),
            jwks: req.jwks.clone(),
            max_age,
            created: now,
            expires,
            last_used: None,
        };
        self.store.add_trust(&trust)?;
        Ok(trust_view(trust, now))
    }

    fn trusts(&mut self) -> Result<Vec<TrustView>> {
        let now = self.now();
        Ok(self
            .store
            .trusts()?
            .into_iter()
            .map(|t| trust_view(t, now))
            .collect())
    }

    fn trust(&mut self, name: &str) -> Result<TrustView> {
        let now = self.now();
        Ok(trust_view(self.store.trust(name)?, now))
    }

    fn edit_trust(&mut self, name: &str, c: &EditTrust) -> Result<TrustView> {
        if c.audience.is_none()
            && c.claims.is_empty()
            && c.remove_claims.is_empty()
            && c.user_claim.is_none()
            && c.users.is_none()
            && c.scope.is_none()
            && c.ip_range.is_none()
            && c.origins.is_none()
            && c.expires.is_none()
            && c.max_age.is_none()
            && c.jwks_uri.is_none()
            && c.jwks.is_none()
            && c.issuer.is_none()
        {
            return Err(invalid(
                "nothing to change; pass --audience, --claim, --remove-claim, --user, --user-claim, --no-user-claim, --scope, --ip-range, --no-ip-range, --origin, --no-origin, --max-age, --expires, --no-expiry, --jwks-uri, --jwks-file or --discover",
            ));
        }
        let old = self.store.trust(name)?;
        // Access tokens name the trust, not the issuer: a new issuer under an old name would
        // make them stand for tokens of a platform nobody reviewed.
        if let Some(issuer) = &c.issuer {
            return Err(invalid(format!(
                "--issuer {}: the issuer of trust '{}' ({}) cannot be changed; remove the trust (tokenauth trust remove {1}) and add it again with the new --issuer",
                printable(issuer),
                old.name,
                old.issuer
            )));
        }
        if let Some(audience) = &c.audience {
            check_audience(audience)?;
        }
        let set = parse_claims(&c.claims)?;
        let mut claims = old.claims.clone();
        for removed in &c.remove_claims {
            if set.contains_key(removed) {
                return Err(invalid(format!(
                    "--claim {0}=… and --remove-claim {0} name the same claim; give one",
                    printable(removed)
                )));
            }
            if claims.remove(removed).is_none() {
                return Err(invalid(format!(
                    "--remove-claim {}: trust '{}' binds no such claim; it binds {}",
                    printable(removed),
                    old.name,
                    printable(&old.claims.keys().cloned().collect::<Vec<_>>().join(", "))
                )));
            }
        }
        claims.extend(set);
        check_claims(&claims, &c.remove_claims)?;
        let user_claim = match c.user_claim.as_deref() {
            None => old.user_claim.clone(),
            Some("") => None,
            Some(claim) => Some(claim.to_owned()),
        };
        let users = c.users.clone().unwrap_or_else(|| old.users.clone());
        check_users(user_claim.as_deref(), &users)?;
        let ip_ranges = c
            .ip_range
            .as_deref()
            .map(|r| parse_ranges(Some(r)))
            .transpose()?;
        let origins = c.origins.as_deref().map(parse_origins).transpose()?;
        let now = self.now();
        let expires = match c.expires.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(e) => Some(parse_expires(Some(e), now)?),
        };
        let max_age = parse_max_age(c.max_age.as_deref())?;
        let (jwks_uri, jwks) = match (c.jwks_uri.as_deref(), c.jwks.as_deref()) {
            (None, None) => (None, None),
            (Some(uri), Some(text)) if !uri.is_empty() && !text.is_empty() => {
                return Err(invalid(
                    "--jwks-uri and --jwks-file are two sources of the issuer's keys; give one",
                ));
            }
            (Some(uri), _) if !uri.is_empty() => {
                check_issuer_url(uri, "--jwks-uri")?;
                (Some(Some(uri.to_owned())), Some(None))
            }
            (_, Some(text)) if !text.is_empty() => {
                check_jwks(text)?;
                (Some(None), Some(Some(text.to_owned())))
            }
            _ => (Some(None), Some(None)),
        };
        let trust = self.store.edit_trust(
            &old.name,
            &TrustChange {
                audience: c.audience.clone(),
                claims: (claims != old.claims).then_some(claims),
                user_claim: (user_claim != old.user_claim).then_some(user_claim),
                users: (users != old.users).then_some(users),
                scope: c.scope,
                ip_ranges,
                origins,
                jwks_uri,
                jwks,
                max_age,
                expires,
            },
        )?;
        Ok(trust_view(trust, now))
    }

    fn remove_trust(&mut self, name: &str) -> Result<TrustView> {
        let now = self.now();
        Ok(trust_view(self.store.remove_trust(name)?, now))
    }

    fn audit(&mut self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        let now = self.now();
        let mut filter = query.filter(now);
        if let Some(target) = &filter.target {
            filter.target = Some(self.audit_target(target)?);
        }
        Ok(self.store.audit(&filter)?)
    }

    fn verify_audit(&mut self) -> Result<AuditVerdict> {
        Ok(self.store.verify_audit()?)
    }

    fn usage(&mut self, q: &UsageQuery) -> Result<Vec<UsageRow>> {
        let key_id = match q.key.as_deref() {
            None => None,
            Some(id) => Some(self.key_or_token_id(id)?),
        };
        let now = self.now();
        Ok(self.store.usage(&UsageFilter {
            key_id,
            user: q.user.clone(),
            since: q.since.map(|s| now.saturating_sub(s)),
            failures_only: q.failures,
            no_jti_only: q.no_jti,
            limit: i64::from(q.limit.unwrap_or(100)),
        })?)
    }

    fn usage_summary(&mut self, q: &UsageQuery) -> Result<UsageSummary> {
        let key_id = match q.key.as_deref() {
            None => None,
            Some(id) => Some(self.key_or_token_id(id)?),
        };
        let now = self.now();
        let since = q.since.unwrap_or(7 * DAY).clamp(1, 366 * DAY);
        let from = now.saturating_sub(since).div_euclid(DAY) * DAY;
        let rows = self.store.usage(&UsageFilter {
            key_id,
            user: q.user.clone(),
            since: Some(now.saturating_sub(since)),
            failures_only: q.failures,
            no_jti_only: q.no_jti,
            limit: i64::MAX,
        })?;
        Ok(summarize(&rows, from, now))
    }

    fn report(&mut self, q: &ReportQuery) -> Result<Report> {
        let now = self.now();
        let users = self.store.users()?;
        let disabled: Vec<&str> = users
            .iter()
            .filter(|u| u.disabled)
            .map(|u| u.name.as_str())
            .collect();
        let live = |revoked: Option<i64>, expires: Option<i64>| {
            revoked.is_none() && expires.is_none_or(|e| e > now)
        };
        let mut found: Vec<(Finding, bool)> = Vec::new();
        // Never used counts from the issue.
        let mut issued_at = std::collections::HashMap::new();
        for k in self.store.keys(None, false)? {
            if !live(k.revoked, k.expires) {
                continue;
            }
            issued_at.insert(k.key_id.clone(), k.issued);
            let anywhere = k.ip_ranges.is_empty();
            found.push((
                Finding {
                    kind: "key".into(),
                    id: k.key_id,
                    user: k.user,
                    title: k.title,
                    scope: k.scope,
                    expires: k.expires,
                    last_used: k.last_used,
                },
                anywhere,
            ));
        }
        for p in self.store.pats(None, false)? {
            // A token its user's rotation ended is as dead as a revoked one.
            if !live(p.revoked, p.expires) || p.ended {
                continue;
            }
            issued_at.insert(p.id.clone(), p.created);
            let anywhere = p.ip_ranges.is_empty();
            found.push((
                Finding {
                    kind: "token".into(),
                    id: p.id,
                    user: p.user,
                    title: p.description,
                    scope: p.scope,
                    expires: p.expires,
                    last_used: p.last_used,
                },
                anywhere,
            ));
        }
        let pick = |keep: &dyn Fn(&Finding, bool) -> bool| -> Vec<Finding> {
            found
                .iter()
                .filter(|(f, anywhere)| keep(f, *anywhere))
                .map(|(f, _)| f.clone())
                .collect()
        };
        Ok(Report {
            time: now,
            expiring_within: q.expiring_within,
            unused_for: q.unused_for,
            expiring: pick(&|f, _| {
                f.expires
                    .is_some_and(|e| e <= now.saturating_add(q.expiring_within))
            }),
            unused: pick(&|f, _| {
                let since = f
                    .last_used
                    .or_else(|| issued_at.get(&f.id).copied())
                    .unwrap_or(now);
                since <= now.saturating_sub(q.unused_for)
            }),
            write_without_ip_range: pick(&|f, anywhere| anywhere && f.scope == Scope::Write),
            impersonate: users
                .iter()
                .filter(|u| u.may("impersonate"))
                .map(|u| u.name.clone())
                .collect(),
            disabled_with_keys: pick(&|f, _| disabled.contains(&f.user.as_str())),
        })
    }
}

/// Per key (or token): issuances, refusals by reason, first and last use, and per-day
/// counts from `from` (a UTC midnight) to `to`. Rows without a key or token are left out.
pub fn summarize(rows: &[UsageRow], from: i64, to: i64) -> UsageSummary {
    let days = ((to - from).div_euclid(DAY) + 1).clamp(1, 367) as usize;
    let mut by: BTreeMap<(Option<String>, Option<String>), KeyUsage> = BTreeMap::new();
    for r in rows {
        if r.key_id.is_none() && r.pat_id.is_none() {
            continue;
        }
        let entry = by
            .entry((r.key_id.clone(), r.pat_id.clone()))
            .or_insert_with(|| KeyUsage {
                key_id: r.key_id.clone(),
                token_id: r.pat_id.clone(),
                user: r.user.clone(),
                issuances: 0,
                refusals: 0,
                refusals_by_reason: BTreeMap::new(),
                first_use: None,
                last_use: None,
                per_day: (0..days)
                    .map(|i| DayCount {
                        day: from + i as i64 * DAY,
                        issuances: 0,
                        refusals: 0,
                    })
                    .collect(),
            });
        if entry.user.is_none() {
            entry.user = r.user.clone();
        }
        let day = usize::try_from((r.time - from).div_euclid(DAY)).ok();
        let slot = day.and_then(|d| entry.per_day.get_mut(d));
        if r.ok {
            entry.issuances += 1;
            if let Some(s) = slot {
                s.issuances += 1;
            }
            entry.first_use = Some(entry.first_use.map_or(r.time, |t| t.min(r.time)));
            entry.last_use = Some(entry.last_use.map_or(r.time, |t| t.max(r.time)));
        } else {
            // A counted row stands for `count` refusals of one kind.
            let n = r.count.max(1);
            entry.refusals += n;
            if let Some(s) = slot {
                s.refusals += n;
            }
            *entry
                .refusals_by_reason
                .entry(r.reason.clone().unwrap_or_default())
                .or_default() += n;
        }
    }
    let mut keys: Vec<KeyUsage> = by.into_values().collect();
    keys.sort_by(|a, b| {
        (b.issuances + b.refusals)
            .cmp(&(a.issuances + a.refusals))
            .then_with(|| a.key_id.cmp(&b.key_id))
            .then_with(|| a.token_id.cmp(&b.token_id))
    });
    UsageSummary { from, to, keys }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(time: i64, key: &str, ok: bool, reason: Option<&str>) -> UsageRow {
        UsageRow {
            time,
            key_id: Some(key.into()),
            address: "127.0.0.1".into(),
            ok,
            reason: reason.map(str::to_owned),
            ..UsageRow::default()
        }
    }

    #[test]
    fn summaries_count_per_key_per_day_and_per_reason() {
        let rows = [
            row(10, "a", true, None),
            row(DAY + 5, "a", true, None),
            row(DAY + 6, "a", false, Some("expired")),
            row(DAY + 7, "a", false, Some("expired")),
            row(2 * DAY, "b", false, Some("bad ip")),
            UsageRow::default(),
        ];
        let s = summarize(&rows, 0, 2 * DAY + 100);
        assert_eq!(s.keys.len(), 2);
        let a = &s.keys[0];
        assert_eq!(a.key_id.as_deref(), Some("a"));
        assert_eq!((a.issuances, a.refusals), (2, 2));
        assert_eq!(a.refusals_by_reason["expired"], 2);
        assert_eq!((a.first_use, a.last_use), (Some(10), Some(DAY + 5)));
        let days: Vec<(i64, i64)> = a
            .per_day
            .iter()
            .map(|d| (d.issuances, d.refusals))
            .collect();
        assert_eq!(days, vec![(1, 0), (1, 2), (0, 0)]);
        assert_eq!(s.keys[1].per_day[2].refusals, 1);
        assert_eq!(s.keys[1].first_use, None);
    }

    fn trust(jwks: Option<String>) -> Trust {
        Trust {
            id: "trust-00".into(),
            name: "gh".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: "https://auth.example.com".into(),
            claims: [("repository_owner".to_owned(), "acme".to_owned())].into(),
            user_claim: None,
            users: vec!["deploy".into()],
            scope: Scope::Read,
            ip_ranges: Vec::new(),
            origins: Vec::new(),
            jwks_uri: None,
            jwks,
            max_age: 3600,
            created: 0,
            expires: Some(100),
            last_used: None,
        }
    }

    #[test]
    fn trust_views_carry_the_jwks_key_count_never_the_document() {
        use crate::oidc::test_keys;
        let text = test_keys::jwks(&[test_keys::rsa(), test_keys::ec()]);
        let view = trust_view(trust(Some(text)), 10);
        assert_eq!((view.jwks_keys, view.state.as_str()), (Some(2), "active"));
        let json = serde_json::to_value(&view).unwrap();
        assert!(
            json.get("jwks").is_none() && json["jwks_keys"] == 2,
            "{json}"
        );
        assert!(!json.to_string().contains("kty"), "{json}");
        let back: TrustView = serde_json::from_value(json).unwrap();
        assert_eq!(back.trust, view.trust);
        let bare = trust_view(trust(None), 100);
        assert_eq!((bare.jwks_keys, bare.state.as_str()), (None, "expired"));
        assert!(bare.warnings[0].contains("repository_owner=acme"));
    }

    #[test]
    fn an_ambiguous_audit_target_prefix_is_refused_naming_the_candidates() {
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            Store::connect(&crate::store::Location::Sqlite(dir.path().join("t.db"))).unwrap();
        store.set_actor("tester", Clock::Fixed(1));
        store.add_user("a", &Secret::new(vec![1; 32]), 1).unwrap();
        for id in ["Ab_c1", "Ab_c2", "Xy-z9"] {
            store.add_key(&crate::store::tests::key(id, "a")).unwrap();
        }
        let mut local = Local::new(store, Clock::Fixed(1));
        let query = |target: &str| AuditQuery {
            target: Some(target.to_owned()),
            ..AuditQuery::default()
        };
        let e = local.audit(&query("Ab_c")).unwrap_err().to_string();
        assert_eq!(
            e,
            "target 'Ab_c' is the start of several ids: Ab_c1, Ab_c2; give more characters"
        );
        let rows = local.audit(&query("Xy-z")).unwrap();
        assert!(rows.iter().all(|r| r.target == "Xy-z9"), "{rows:?}");
        assert!(!rows.is_empty());
    }

    #[test]
    fn trust_names_are_plain_words_that_cannot_read_as_flags() {
        for good in ["gh-deploy", "a", "v1.2_x", &"a".repeat(64)] {
            check_trust_name(good).unwrap();
        }
        for bad in ["", "a b", "-x", "d\u{e9}ploy", "a/b", &"a".repeat(65)] {
            let e = check_trust_name(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid trust name '"), "{e}");
        }
    }

    #[test]
    fn claims_and_users_are_refused_naming_what_is_wrong() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e = parse_claims(&args(&["ref=a", "ref=b"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--claim ref is given twice ('ref=a' and 'ref=b')"),
            "{e}"
        );
        let wild = parse_claims(&args(&["repository=*"])).unwrap();
        let e = check_claims(&wild, &[]).unwrap_err().to_string();
        assert!(e.starts_with("--claim repository=* binds nothing: "), "{e}");
        let e = check_claims(&BTreeMap::new(), &args(&["ref"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--remove-claim ref leaves no bound claim: "),
            "{e}"
        );
        let e = check_users(None, &args(&["a", "b"]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("2 users (a, b) without --user-claim"), "{e}");
        let e = check_users(Some("actor"), &[]).unwrap_err().to_string();
        assert!(e.contains("--user-claim actor needs the users"), "{e}");
        let e = check_users(Some("actor"), &args(&["a", "a"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--user a is given twice"), "{e}");
        check_users(Some("actor"), &args(&["a", "b"])).unwrap();
        let e = parse_max_age(Some("2d")).unwrap_err().to_string();
        assert!(e.starts_with("--max-age 2d is outside 1s to 24h"), "{e}");
        assert_eq!(parse_max_age(Some("10m")).unwrap(), Some(600));
    }
}
