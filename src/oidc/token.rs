//! ID tokens: reading one (before its signature is checked) and holding its claims to a
//! trust's rules (after).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::jwks::IdAlg;
use super::rules::{claim_text, matches};
use crate::grant::SKEW;
use crate::text::printable;

/// The longest ID token read: real ones are 1–3 KiB.
pub const MAX_TOKEN: usize = 16 * 1024;

/// An ID token whose signature is not checked yet: what picks the trust and the key.
#[derive(Debug, Clone)]
pub struct Unverified {
    pub alg: IdAlg,
    pub kid: Option<String>,
    pub iss: String,
    pub claims: Map<String, Value>,
    /// `header.payload` exactly as sent: what the signature covers.
    message: String,
    signature: Vec<u8>,
}

impl Unverified {
    /// Reads a compact JWS. Everything is refused that no key could make acceptable: an
    /// algorithm other than RS256/ES256 (`none` and HMAC above all), `crit`, a payload
    /// without a string `iss`.
    pub fn parse(token: &str) -> Result<Unverified, String> {
        if token.len() > MAX_TOKEN {
            return Err(format!(
                "The ID token is {} bytes long; at most {MAX_TOKEN} are accepted",
                token.len()
            ));
        }
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() == 5 {
            return Err("Encrypted ID tokens (JWE) are not accepted; send a signed one".into());
        }
        if parts.len() != 3 {
            return Err("Malformed ID token: a JWT has three dot-separated parts".into());
        }
        let header = decode_part(parts[0], "header")?;
        let Some(name) = header.get("alg").and_then(Value::as_str) else {
            return Err("Malformed ID token: its header has no alg".into());
        };
        let Some(alg) = IdAlg::from_name(name) else {
            // Anyone can send this, before any signature check: echo it tamed.
            return Err(format!(
                "Algorithm '{}' is not accepted for ID tokens; only RS256 and ES256 are",
                printable(name)
            ));
        };
        if header.contains_key("crit") {
            return Err(
                "The ID token's header has critical parameters (crit), which are not supported"
                    .into(),
            );
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err("Malformed ID token: its header's kid is not a string".into()),
        };
        let claims = decode_part(parts[1], "payload")?;
        let iss = match claims.get("iss") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("Malformed ID token: its iss claim is not a string".into()),
            None => return Err("Malformed ID token: it has no iss claim".into()),
        };
        let signature = URL_SAFE_NO_PAD
            .decode(parts[2])
            .map_err(|_| "Malformed ID token: its signature is not base64url")?;
        Ok(Unverified {
            alg,
            kid,
            iss,
            claims,
            message: token[..parts[0].len() + 1 + parts[1].len()].to_owned(),
            signature,
        })
    }

    /// What the signature covers.
    pub fn message(&self) -> &[u8] {
        self.message.as_bytes()
    }

    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

fn decode_part(part: &str, what: &str) -> Result<Map<String, Value>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| format!("Malformed ID token: its {what} is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(format!(
            "Malformed ID token: its {what} is not a JSON object"
        )),
    }
}

/// What a trust requires of an ID token (the lead's store row, borrowed).
#[derive(Debug, Clone, Copy)]
pub struct TrustRules<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    /// Bound claims: name → pattern (see [`super::rules::matches`]).
    pub claims: &'a BTreeMap<String, String>,
    /// The claim naming the user; without it, the user is `users[0]`.
    pub user_claim: Option<&'a str>,
    pub users: &'a [String],
    /// Seconds: how old (`now - iat`) a token may be.
    pub max_age: i64,
}

/// An ID token that passed a trust's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub user: String,
    /// The bound claims' values in the token (for the usage log).
    pub claims: BTreeMap<String, String>,
    pub jti: Option<String>,
    /// Until when the token must be remembered as used: its `exp`, or its `iat` plus the
    /// trust's max age (and skew) when that comes first.
    pub exp: i64,
    /// What makes the token single-use: `store::replay_key("oidc:<iss>", jti, signature)`.
    pub replay_key: [u8; 16],
}

/// Why an ID token does not satisfy a trust. The description names the rule or claim and the
/// token's value, never the trust's wanted value (an attacker should not learn it) nor the
/// token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct Failure {
    pub description: String,
}

fn fail<T>(description: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        description: description.into(),
    })
}

/// Holds a token whose signature has been verified to `trust`'s rules, in a fixed order:
/// issuer, audience, expiry, issue time, nbf, bound claims by name, subject.
pub fn check(u: &Unverified, trust: &TrustRules, now: i64) -> Result<Matched, Failure> {
    let claims = &u.claims;
    if u.iss != trust.issuer {
        return fail(format!(
            "The ID token's issuer is '{}', not this trust's",
            printable(&u.iss)
        ));
    }
    check_audience(claims.get("aud"), trust.audience)?;
    let Some(exp) = time_claim(claims, "exp")? else {
        return fail("The ID token has no expiry (exp)");
    };
    if exp <= now {
        return fail("The ID token has expired");
    }
    if exp > now.saturating_add(366 * 86_400) {
        return fail("The ID token expires more than a year from now");
    }
    let Some(iat) = time_claim(claims, "iat")? else {
        return fail("The ID token has no issue time (iat)");
    };
    if iat > now + SKEW {
        return fail("The ID token was issued in the future");
    }
    // Saturating: an iat of i64::MIN must read as ancient, not wrap round to the future.
    let age = now.saturating_sub(iat);
    if age > trust.max_age {
        return fail(format!(
            "The ID token was issued {} ago; this trust accepts tokens at most {} old",
            span(age),
            span(trust.max_age)
        ));
    }
    if let Some(nbf) = time_claim(claims, "nbf")?
        && nbf > now + SKEW
    {
        return fail("The ID token is not valid yet (nbf)");
    }
    let mut matched = BTreeMap::new();
    for (name, pattern) in trust.claims {
        let value = text_claim(claims, name)?;
        if !matches(pattern, &value) {
            return fail(format!(
                "Claim '{}' is '{}', which the trust does not accept",
                printable(name),
                printable(&value)
            ));
        }
        matched.insert(name.clone(), value);
    }
    let user = match trust.user_claim {
        None => match trust.users.first() {
            Some(u) => u.clone(),
            None => return fail("The trust names no user; give it one with `trust edit`"),
        },
        Some(name) => {
            let value = text_claim(claims, name)?;
            if !trust.users.contains(&value) {
                return fail(format!(
                    "Claim '{}' is '{}', which is not one of this trust's users",
                    printable(name),
                    printable(&value)
                ));
            }
            value
        }
    };
    let jti = match claims.get("jti") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 256 => Some(s.clone()),
        Some(_) => return fail("Claim 'jti' must be a string of 1 to 256 characters"),
    };
    let replay_key =
        crate::store::replay_key(&format!("oidc:{}", u.iss), jti.as_deref(), &u.signature);
    Ok(Matched {
        user,
        claims: matched,
        jti,
        // Used only to say how long the token must be remembered as used: past its max age
        // the trust refuses it anyway, however late its own expiry.
        exp: exp.min(iat.saturating_add(trust.max_age).saturating_add(SKEW)),
        replay_key,
    })
}

fn check_audience(aud: Option<&Value>, audience: &str) -> Result<(), Failure> {
    match aud {
        None => fail("The ID token has no audience (aud)"),
        Some(Value::String(a)) if a == audience => Ok(()),
        Some(Value::String(a)) => fail(format!(
            "The ID token's audience is '{}', not this trust's",
            printable(a)
        )),
        Some(Value::Array(list)) if list.iter().any(|a| a.as_str() == Some(audience)) => Ok(()),
        Some(Value::Array(list)) => {
            let shown: Vec<String> = list
                .iter()
                .take(5)
                .map(|a| match a.as_str() {
                    Some(s) => format!("'{}'", printable(s)),
                    None => "a non-string".to_owned(),
                })
                .collect();
            let more = if list.len() > 5 { ", …" } else { "" };
            fail(format!(
                "The ID token's audiences ({}{more}) do not include this trust's",
                shown.join(", ")
            ))
        }
        Some(_) => fail("The ID token's audience (aud) is not a string or an array of strings"),
    }
}

/// A claim in seconds since the epoch; a fractional one is cut to whole seconds.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Failure> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    v.as_i64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f as i64)
        })
        .map(Some)
        .ok_or_else(|| Failure {
            description: format!("Claim '{name}' must be a number (seconds since the epoch)"),
        })
}

fn text_claim(claims: &Map<String, Value>, name: &str) -> Result<String, Failure> {
    match claims.get(name) {
        None => fail(format!("Claim '{}' is missing", printable(name))),
        Some(v) => match claim_text(v) {
            Some(t) => Ok(t.into_owned()),
            None => fail(format!(
                "Claim '{}' is not a string, number or boolean, so it matches nothing",
                printable(name)
            )),
        },
    }
}

fn span(secs: i64) -> String {
    crate::clock::human_duration(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::test_keys;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const ISS: &str = "https://token.actions.githubusercontent.com";

    fn claims() -> Value {
        json!({
            "iss": ISS,
            "aud": "https://auth.example.com",
            "iat": NOW - 10,
            "exp": NOW + 300,
            "jti": "j-1",
            "repository": "acme/app",
            "ref": "refs/heads/main",
            "actor": "alice",
            "run_number": 42,
        })
    }

    fn bound() -> BTreeMap<String, String> {
        [("repository", "acme/*"), ("ref", "refs/heads/main")]
            .into_iter()
            .map(|(n, p)| (n.to_owned(), p.to_owned()))
            .collect()
    }

    fn run(
        claims: &Value,
        bound: &BTreeMap<String, String>,
        user_claim: Option<&str>,
    ) -> Result<Matched, String> {
        let users = ["alice".to_owned(), "bob".to_owned()];
        let trust = TrustRules {
            issuer: ISS,
            audience: "https://auth.example.com",
            claims: bound,
            user_claim,
            users: &users,
            max_age: 3600,
        };
        let token = test_keys::rsa().token(claims);
        let u = Unverified::parse(&token).map_err(|e| format!("parse: {e}"))?;
        check(&u, &trust, NOW).map_err(|f| f.description)
    }

    fn with(changes: Value) -> Value {
        let mut c = claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    #[test]
    fn a_token_that_fits_the_trust_is_matched() {
        let m = run(&claims(), &bound(), None).unwrap();
        assert_eq!(m.user, "alice");
        assert_eq!(m.exp, NOW + 300);
        assert_eq!(m.jti.as_deref(), Some("j-1"));
        assert_eq!(m.claims["repository"], "acme/app");
        assert_eq!(m.claims.len(), 2);
        let token = test_keys::rsa().token(&claims());
        let u = Unverified::parse(&token).unwrap();
        assert_eq!(u.alg, IdAlg::RS256);
        assert_eq!(u.kid.as_deref(), Some(test_keys::rsa().kid.as_str()));
        assert_eq!(u.iss, ISS);
        assert_eq!(
            m.replay_key,
            crate::store::replay_key(&format!("oidc:{ISS}"), Some("j-1"), u.signature())
        );
        assert_eq!(u.message(), token.rsplit_once('.').unwrap().0.as_bytes());
        // A number compares as its JSON text; an audience array may hold the trust's.
        let mut numbers = bound();
        numbers.insert("run_number".into(), "42".into());
        let many = with(json!({"aud": ["other", "https://auth.example.com"]}));
        assert!(run(&many, &numbers, None).is_ok());
        // Without a jti the signature keys the replay check; a jti that is there must be
        // usable (as for grants).
        assert_eq!(
            run(&with(json!({"jti": null})), &bound(), None)
                .unwrap()
                .jti,
            None
        );
        for bad in [json!(""), json!(7), json!("x".repeat(257))] {
            assert_eq!(
                run(&with(json!({"jti": bad})), &bound(), None).unwrap_err(),
                "Claim 'jti' must be a string of 1 to 256 characters"
            );
        }
        // A far expiry is refused; a long one is remembered for replays only as long as the
        // trust would accept the token anyway.
        assert_eq!(
            run(&with(json!({"exp": i64::MAX})), &bound(), None).unwrap_err(),
            "The ID token expires more than a year from now"
        );
        let long = run(&with(json!({"exp": NOW + 30 * 86_400})), &bound(), None).unwrap();
        assert!(long.exp <= NOW + 3_600 + crate::grant::SKEW, "{}", long.exp);
    }

    #[test]
    fn refusals_name_the_rule_and_the_tokens_value_never_the_trusts() {
        let cases = [
            (
                json!({"iss": "https://evil.example"}),
                "The ID token's issuer is 'https://evil.example', not this trust's",
            ),
            (
                json!({"aud": "https://other"}),
                "The ID token's audience is 'https://other', not this trust's",
            ),
            (
                json!({"aud": ["a", 1]}),
                "The ID token's audiences ('a', a non-string) do not include this trust's",
            ),
            (json!({"aud": null}), "The ID token has no audience (aud)"),
            (
                json!({"aud": 7}),
                "The ID token's audience (aud) is not a string or an array of strings",
            ),
            (json!({"exp": null}), "The ID token has no expiry (exp)"),
            (
                json!({"exp": "soon"}),
                "Claim 'exp' must be a number (seconds since the epoch)",
            ),
            (json!({"exp": NOW}), "The ID token has expired"),
            (json!({"iat": null}), "The ID token has no issue time (iat)"),
            (
                json!({"iat": NOW + 61}),
                "The ID token was issued in the future",
            ),
            (
                json!({"iat": NOW - 3 * 3600}),
                "The ID token was issued 3h ago; this trust accepts tokens at most 1h old",
            ),
            (
                json!({"iat": i64::MIN}),
                "The ID token was issued 106751991167301d ago; this trust accepts tokens at most 1h old",
            ),
            (
                json!({"nbf": NOW + 120}),
                "The ID token is not valid yet (nbf)",
            ),
            (
                json!({"ref": "refs/heads/dev"}),
                "Claim 'ref' is 'refs/heads/dev', which the trust does not accept",
            ),
            (
                json!({"repository": "evil/app", "ref": "refs/heads/dev"}),
                "Claim 'ref' is 'refs/heads/dev', which the trust does not accept",
            ),
            (json!({"repository": null}), "Claim 'repository' is missing"),
            (
                json!({"repository": ["acme/app"]}),
                "Claim 'repository' is not a string, number or boolean, so it matches nothing",
            ),
            (
                json!({"ref": "refs/heads/\u{0}main"}),
                r"Claim 'ref' is 'refs/heads/\u{0}main', which the trust does not accept",
            ),
        ];
        for (changes, want) in cases {
            assert_eq!(
                run(&with(changes.clone()), &bound(), None).unwrap_err(),
                want,
                "{changes}"
            );
        }
        // Skew is tolerated, and a long value is cut to 64 characters.
        assert!(
            run(
                &with(json!({"iat": NOW + 60, "nbf": NOW + 60})),
                &bound(),
                None
            )
            .is_ok()
        );
        let long = run(&with(json!({"ref": "x".repeat(500)})), &bound(), None).unwrap_err();
        assert_eq!(
            long,
            format!(
                "Claim 'ref' is '{}', which the trust does not accept",
                "x".repeat(64)
            )
        );
    }

    #[test]
    fn the_user_comes_from_the_user_claim_within_the_trusts_users() {
        assert_eq!(
            run(&claims(), &bound(), Some("actor")).unwrap().user,
            "alice"
        );
        assert_eq!(
            run(&with(json!({"actor": "bob"})), &bound(), Some("actor"))
                .unwrap()
                .user,
            "bob"
        );
        assert_eq!(
            run(&with(json!({"actor": "mallory"})), &bound(), Some("actor")).unwrap_err(),
            "Claim 'actor' is 'mallory', which is not one of this trust's users"
        );
        assert_eq!(
            run(&with(json!({"actor": null})), &bound(), Some("actor")).unwrap_err(),
            "Claim 'actor' is missing"
        );
    }

    #[test]
    fn tokens_no_key_could_make_acceptable_are_refused_before_any_lookup() {
        let key = test_keys::rsa();
        for alg in ["none", "HS256", "HS384", "HS512", "RS512", "EdDSA", "rs256"] {
            let token = key.token_with_header(&json!({"alg": alg}), &claims());
            assert_eq!(
                Unverified::parse(&token).unwrap_err(),
                format!(
                    "Algorithm '{alg}' is not accepted for ID tokens; only RS256 and ES256 are"
                )
            );
        }
        let token = key.token_with_header(&json!({"alg": "HS\u{1b}256"}), &claims());
        assert!(
            Unverified::parse(&token)
                .unwrap_err()
                .contains(r"'HS\u{1b}256'")
        );
        let crit = key.token_with_header(&json!({"alg": "RS256", "crit": ["exp"]}), &claims());
        assert!(Unverified::parse(&crit).unwrap_err().contains("crit"));
        let kid = key.token_with_header(&json!({"alg": "RS256", "kid": 5}), &claims());
        assert!(
            Unverified::parse(&kid)
                .unwrap_err()
                .contains("kid is not a string")
        );
        let no_iss = key.token(&json!({"sub": "x"}));
        assert!(
            Unverified::parse(&no_iss)
                .unwrap_err()
                .contains("no iss claim")
        );
        let num_iss = key.token(&json!({"iss": 1}));
        assert!(
            Unverified::parse(&num_iss)
                .unwrap_err()
                .contains("iss claim is not a string")
        );
        let big = key.token(&json!({"iss": ISS, "pad": "x".repeat(MAX_TOKEN)}));
        assert!(
            Unverified::parse(&big)
                .unwrap_err()
                .contains("at most 16384")
        );
        assert!(
            Unverified::parse("a.b")
                .unwrap_err()
                .contains("three dot-separated parts")
        );
        assert!(Unverified::parse("a.b.c.d.e").unwrap_err().contains("JWE"));
        assert!(
            Unverified::parse("!.b.c")
                .unwrap_err()
                .contains("header is not base64url")
        );
        assert!(
            Unverified::parse("W10.e30.AA")
                .unwrap_err()
                .contains("header is not a JSON object")
        );
        let token = key.token(&claims());
        let bad_sig = format!("{}.*", token.rsplit_once('.').unwrap().0);
        assert!(
            Unverified::parse(&bad_sig)
                .unwrap_err()
                .contains("signature is not base64url")
        );
        let es = test_keys::ec().token(&claims());
        assert_eq!(Unverified::parse(&es).unwrap().alg, IdAlg::ES256);
    }
}
