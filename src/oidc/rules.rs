//! A trust's bound claims: reading `--claim NAME=VALUE`, validating a trust's set of them,
//! and matching an ID token's claim values against their patterns.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::text::printable;

/// Claims with rules of their own (issuer, audience, lifetime, single use): binding them as
/// patterns would either duplicate or undercut those rules.
pub const RESERVED: [&str; 6] = ["iss", "aud", "exp", "iat", "nbf", "jti"];

/// Claims that name a whole organisation (GitHub, GitLab) rather than one repository.
const ORG_WIDE: [&str; 4] = [
    "repository_owner",
    "repository_owner_id",
    "namespace_path",
    "namespace_id",
];

const EXAMPLE: &str = "e.g. --claim repository=acme/app --claim ref=refs/heads/main";

/// Splits `--claim NAME=VALUE` at its first `=` (the value may hold more).
pub fn parse_claim(arg: &str) -> Result<(String, String), String> {
    let Some((name, value)) = arg.split_once('=') else {
        return Err(format!(
            "--claim '{}' has no '='; write NAME=VALUE, e.g. --claim repository=acme/app",
            printable(arg)
        ));
    };
    if name.is_empty() {
        return Err(format!(
            "--claim '{}' has no claim name before '='; write NAME=VALUE, e.g. --claim repository=acme/app",
            printable(arg)
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// Checks a trust's bound claims (for `trust add`/`edit`, local and remote alike).
pub fn check_rules(claims: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, pattern) in claims {
        if name.is_empty() {
            return Err("a bound claim has an empty name; write --claim NAME=VALUE".into());
        }
        if name.contains('=') {
            return Err(format!(
                "the claim name '{}' holds '='; claim names cannot, write --claim NAME=VALUE",
                printable(name)
            ));
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "'{name}' cannot be a bound claim: the trust's issuer, audience and max age \
                 already rule iss, aud, exp, iat, nbf and jti; bind the claims that name the \
                 workload instead, {EXAMPLE}"
            ));
        }
        // An unset shell variable (`--claim ref=$REF`) would otherwise bind "" silently.
        if pattern.is_empty() {
            return Err(format!(
                "claim '{}' has an empty value; give the value the token's claim must have, \
                 or '*' for any",
                printable(name)
            ));
        }
    }
    if !claims.values().any(|p| !only_stars(p)) {
        return Err(format!(
            "a trust needs at least one bound claim besides iss and aud whose value is not \
             only '*', so that tokens of any repository on GitHub (or any project of the \
             issuer) cannot be trusted by accident; {EXAMPLE}"
        ));
    }
    Ok(())
}

fn only_stars(pattern: &str) -> bool {
    pattern.bytes().all(|b| b == b'*')
}

/// Whether `value` matches `pattern`: exactly, except that each `*` stands for any run of
/// characters, `/` included.
///
/// Iterative with one backtrack point (the last `*`): O(len(pattern) × len(value)) at worst,
/// with no recursion for a hostile value to blow up.
pub fn matches(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut pi, mut vi) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and where in the value that `*`'s
    // run currently ends.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            star = Some((pi, vi));
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((resume, end)) = star {
            // Let the last `*` swallow one byte more and try again from there.
            pi = resume;
            vi = end + 1;
            star = Some((resume, end + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// A claim's value as patterns see it: a string as itself, a number or boolean as its JSON
/// text; anything else (arrays, objects, null) matches no pattern.
pub fn claim_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// A warning when every claim that restricts anything names a whole organisation.
pub fn org_wide_only(claims: &BTreeMap<String, String>) -> Option<String> {
    let restricting: Vec<(&String, &String)> =
        claims.iter().filter(|(_, p)| !only_stars(p)).collect();
    let org_wide = |name: &str, pattern: &str| {
        ORG_WIDE.contains(&name)
            || (matches!(name, "repository" | "project_path") && pattern.ends_with("/*"))
    };
    if restricting.is_empty() || !restricting.iter().all(|(n, p)| org_wide(n, p)) {
        return None;
    }
    let bound: Vec<String> = restricting
        .iter()
        .map(|(n, p)| format!("{}={}", printable(n), printable(p)))
        .collect();
    Some(format!(
        "this trust binds only {}, which names a whole organisation: every \
         repository in it can get tokens, including repositories created later and workflows \
         that run pull requests' code (from forks too) in the organisation's repositories; bind \
         the repository and its branch or environment as well, {EXAMPLE}",
        bound.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect()
    }

    #[test]
    fn claims_split_at_the_first_equals_and_errors_say_how_to_write_them() {
        assert_eq!(
            parse_claim("ref=refs/heads/main").unwrap(),
            ("ref".into(), "refs/heads/main".into())
        );
        assert_eq!(parse_claim("x=a=b").unwrap(), ("x".into(), "a=b".into()));
        assert_eq!(
            parse_claim("repository").unwrap_err(),
            "--claim 'repository' has no '='; write NAME=VALUE, e.g. --claim repository=acme/app"
        );
        assert!(
            parse_claim("=acme")
                .unwrap_err()
                .contains("no claim name before '='")
        );
        assert!(parse_claim("a\u{1b}b").unwrap_err().contains(r"a\u{1b}b"));
    }

    #[test]
    fn rule_sets_need_one_real_claim_and_no_reserved_names() {
        assert!(check_rules(&set(&[("repository", "acme/app")])).is_ok());
        assert!(check_rules(&set(&[("repository", "acme/*"), ("ref", "*")])).is_ok());
        let none = check_rules(&set(&[])).unwrap_err();
        assert!(
            none.contains("at least one bound claim besides iss and aud"),
            "{none}"
        );
        assert!(none.contains("--claim repository=acme/app"), "{none}");
        assert!(
            check_rules(&set(&[("repository", "*"), ("ref", "**")]))
                .unwrap_err()
                .contains("any repository on GitHub")
        );
        for reserved in RESERVED {
            let e = check_rules(&set(&[(reserved, "x"), ("repository", "acme/app")])).unwrap_err();
            assert!(e.starts_with(&format!("'{reserved}' cannot be")), "{e}");
        }
        assert!(
            check_rules(&set(&[("", "x")]))
                .unwrap_err()
                .contains("empty name")
        );
        assert!(
            check_rules(&set(&[("a=b", "x")]))
                .unwrap_err()
                .contains("'='")
        );
        assert!(
            check_rules(&set(&[("ref", "")]))
                .unwrap_err()
                .contains("empty value")
        );
    }

    #[test]
    fn patterns_are_exact_unless_they_hold_a_star() {
        assert!(matches("acme/app", "acme/app"));
        assert!(!matches("acme/app", "acme/app2"));
        assert!(!matches("acme/app", "Acme/app"));
        assert!(!matches("acme/ap?", "acme/app"));
        assert!(!matches("acme/[a]pp", "acme/app"));
        assert!(matches("acme/*", "acme/app"));
        assert!(matches("acme/*", "acme/"));
        assert!(matches("acme/*", "acme/team/app"));
        assert!(!matches("acme/*", "acme"));
        assert!(!matches("acme/*", "acmeX/app"));
        assert!(matches("refs/heads/release-*", "refs/heads/release-1.2"));
        assert!(matches("*", ""));
        assert!(matches("*/*", "a/b/c"));
        assert!(matches("a*b*c", "aXXbYYbc"));
        assert!(!matches("a*b*c", "aXXbYYb"));
        assert!(matches("*é*", "café au lait"));
        assert!(!matches("", "x"));
        assert!(matches("", ""));
    }

    #[test]
    fn hostile_values_match_in_bounded_time() {
        let value = "a".repeat(16_384);
        let pattern = format!("{}b", "*a".repeat(200));
        let start = std::time::Instant::now();
        assert!(!matches(&pattern, &value));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn claim_values_compare_as_text_and_structures_never_match() {
        assert_eq!(claim_text(&json!("main")).as_deref(), Some("main"));
        assert_eq!(claim_text(&json!(42)).as_deref(), Some("42"));
        assert_eq!(claim_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(claim_text(&json!(null)), None);
        assert_eq!(claim_text(&json!(["main"])), None);
        assert_eq!(claim_text(&json!({"a": 1})), None);
    }

    #[test]
    fn binding_only_the_organisation_is_warned_about() {
        let warn = org_wide_only(&set(&[("repository_owner", "acme")])).unwrap();
        assert!(warn.contains("repository_owner=acme"), "{warn}");
        assert!(warn.contains("every repository in it"), "{warn}");
        assert!(org_wide_only(&set(&[("repository", "acme/*"), ("ref", "*")])).is_some());
        assert!(
            org_wide_only(&set(&[
                ("namespace_path", "acme"),
                ("project_path", "acme/*")
            ]))
            .is_some()
        );
        assert!(
            org_wide_only(&set(&[
                ("repository_owner", "acme"),
                ("ref", "refs/heads/main")
            ]))
            .is_none()
        );
        assert!(org_wide_only(&set(&[("repository", "acme/app")])).is_none());
        assert!(org_wide_only(&set(&[])).is_none());
    }
}
