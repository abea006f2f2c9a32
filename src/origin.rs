//! Browser origins (`scheme://host[:port]`): strict parsing to one normal form, and the lists
//! of them that keys and personal access tokens carry.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("'*' is not an origin: list each site that may call, e.g. https://app.example.com")]
    Wildcard,
    #[error(
        "'{0}' is not an origin; an origin looks like https://app.example.com or http://127.0.0.1:3000"
    )]
    NotUrl(String),
    #[error("'{0}' is not http or https; browser origins are http://… or https://…")]
    Scheme(String),
    #[error("'{0}' has a user name or password; an origin is scheme://host[:port] only")]
    Userinfo(String),
    #[error(
        "'{0}' has a path, query or fragment; an origin is scheme://host[:port] only, e.g. {1}"
    )]
    Path(String, String),
}

/// Parses one origin into its normal form: lower-case scheme and host, no default port, no
/// trailing slash (`HTTPS://App.Example.com:443/` is `https://app.example.com`). This is the
/// form browsers send in the `Origin` header.
pub fn parse(text: &str) -> Result<String, OriginError> {
    let text = text.trim();
    if text == "*" || text.contains('*') {
        return Err(OriginError::Wildcard);
    }
    let url = url::Url::parse(text).map_err(|_| OriginError::NotUrl(text.to_owned()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OriginError::Scheme(text.to_owned()));
    }
    if url.host().is_none() {
        return Err(OriginError::NotUrl(text.to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OriginError::Userinfo(text.to_owned()));
    }
    let origin = url.origin().ascii_serialization();
    // The path is "/" with or without one trailing slash, which is how URLs are often copied.
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(OriginError::Path(text.to_owned(), origin));
    }
    Ok(origin)
}

/// Parses `--origin` values, in order, without duplicates.
pub fn parse_list(values: &[String]) -> Result<Vec<String>, OriginError> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let o = parse(v)?;
        if !out.contains(&o) {
            out.push(o);
        }
    }
    Ok(out)
}

/// The stored form: origins separated by spaces (an origin never holds one).
pub fn format(origins: &[String]) -> String {
    origins.join(" ")
}

pub fn from_stored(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        for (given, want) in [
            ("https://app.example.com", "https://app.example.com"),
            ("HTTPS://App.Example.COM:443/", "https://app.example.com"),
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("http://localhost:80", "http://localhost"),
            ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
            ("https://bücher.example", "https://xn--bcher-kva.example"),
        ] {
            assert_eq!(parse(given).as_deref(), Ok(want), "{given}");
        }
    }

    #[test]
    fn wildcards_paths_userinfo_and_other_schemes_are_refused() {
        assert_eq!(parse("*"), Err(OriginError::Wildcard));
        assert_eq!(parse("https://*.example.com"), Err(OriginError::Wildcard));
        for bad in [
            "https://app.example.com/login",
            "https://app.example.com//",
            "https://app.example.com/?x=1",
            "https://app.example.com#top",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, OriginError::Path(..)), "{bad}: {err}");
            assert!(
                err.to_string().contains("e.g. https://app.example.com"),
                "{err}"
            );
        }
        assert!(matches!(
            parse("https://user:pw@app.example.com"),
            Err(OriginError::Userinfo(_))
        ));
        assert!(matches!(
            parse("ftp://files.example.com"),
            Err(OriginError::Scheme(_))
        ));
        assert!(matches!(parse("file:///etc"), Err(OriginError::Scheme(_))));
        for bad in ["app.example.com", "", "null", "https://"] {
            assert!(matches!(parse(bad), Err(OriginError::NotUrl(_))), "{bad:?}");
        }
    }

    #[test]
    fn lists_keep_order_and_drop_duplicates() {
        let list = parse_list(&[
            "https://b.example".into(),
            "https://a.example".into(),
            "HTTPS://B.example/".into(),
        ])
        .unwrap();
        assert_eq!(list, ["https://b.example", "https://a.example"]);
        assert_eq!(from_stored(&format(&list)), list);
        assert!(from_stored("").is_empty());
    }
}
