//! Parsing and matching the IP ranges a key may be used from.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RangeError {
    #[error(
        "'{0}' is not an IP address or CIDR network (e.g. 192.168.1.1, 10.0.0.0/8, 2001:db8::/32)"
    )]
    Invalid(String),
    #[error("'{0}' has host bits set; did you mean {1}?")]
    HostBits(String, IpNet),
    #[error("empty entry in IP ranges '{0}'; separate ranges with single commas")]
    Empty(String),
}

/// Parses "a, b/n, …" into networks. An empty or blank string means "no restriction".
pub fn parse(text: &str) -> Result<Vec<IpNet>, RangeError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(RangeError::Empty(text.to_owned()));
        }
        let net = if part.contains('/') {
            let net: IpNet = part
                .parse()
                .map_err(|_| RangeError::Invalid(part.to_owned()))?;
            if net.trunc() != net {
                return Err(RangeError::HostBits(part.to_owned(), net.trunc()));
            }
            net
        } else {
            let addr: IpAddr = part
                .parse()
                .map_err(|_| RangeError::Invalid(part.to_owned()))?;
            IpNet::from(addr)
        };
        if !out.contains(&net) {
            out.push(net);
        }
    }
    Ok(out)
}

/// The canonical text form stored and shown: "10.0.0.0/8,192.168.1.1/32".
pub fn format(ranges: &[IpNet]) -> String {
    ranges
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The caller's address as the server could establish it. `Unknown` when a trusted proxy
/// passed an `X-Forwarded-For` hop that cannot be read: the client is then nobody in
/// particular, never the proxy itself, so keys limited to IP ranges refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddr {
    Ip(IpAddr),
    Unknown,
}

impl ClientAddr {
    /// Whether this caller may use a key with these ranges (no ranges: anyone, even an
    /// unknown caller).
    pub fn allowed_by(self, ranges: &[IpNet]) -> bool {
        match self {
            ClientAddr::Ip(ip) => allows(ranges, ip),
            ClientAddr::Unknown => ranges.is_empty(),
        }
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAddr::Ip(ip) => ip.fmt(f),
            ClientAddr::Unknown => f.write_str("unknown"),
        }
    }
}

/// Whether `addr` may use a key with these ranges (no ranges: anywhere). An IPv4 client
/// can appear as a.b.c.d or, from a dual-stack socket, as ::ffff:a.b.c.d, and a range can be
/// written either way (::ffff:10.0.0.0/104 is 10.0.0.0/8): both spellings are matched.
pub fn allows(ranges: &[IpNet], addr: IpAddr) -> bool {
    if ranges.is_empty() {
        return true;
    }
    let other = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
    };
    ranges
        .iter()
        .any(|n| n.contains(&addr) || other.is_some_and(|o| n.contains(&o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_addresses_networks_and_ipv6() {
        let r = parse("192.168.1.1, 10.0.0.0/8,2001:db8::/32").unwrap();
        assert_eq!(format(&r), "192.168.1.1/32,10.0.0.0/8,2001:db8::/32");
        assert!(allows(&r, "10.1.2.3".parse().unwrap()));
        assert!(allows(&r, "192.168.1.1".parse().unwrap()));
        assert!(!allows(&r, "192.168.1.2".parse().unwrap()));
        assert!(allows(&r, "2001:db8::1".parse().unwrap()));
        assert!(allows(&r, "::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn refuses_host_bits_and_junk_naming_the_bad_part() {
        assert_eq!(
            parse("10.0.0.1/8").unwrap_err(),
            RangeError::HostBits("10.0.0.1/8".into(), "10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            parse("10.0.0.0/8, bogus").unwrap_err(),
            RangeError::Invalid("bogus".into())
        );
        assert_eq!(
            parse("10.0.0.0/33").unwrap_err(),
            RangeError::Invalid("10.0.0.0/33".into())
        );
        assert!(matches!(
            parse("10.0.0.0/8,,").unwrap_err(),
            RangeError::Empty(_)
        ));
    }

    /// Found by the `ip_ranges` fuzz target: a range written in IPv4-mapped form refused
    /// the very addresses it names.
    #[test]
    fn ipv4_mapped_ranges_match_both_spellings_of_their_addresses() {
        let r = parse("::ffff:10.0.0.0/104").unwrap();
        assert!(allows(&r, "10.0.0.0".parse().unwrap()));
        assert!(allows(&r, "::ffff:10.255.0.1".parse().unwrap()));
        assert!(!allows(&r, "11.0.0.1".parse().unwrap()));
        let one = parse("::ffff:192.0.2.7").unwrap();
        assert!(allows(&one, "192.0.2.7".parse().unwrap()));
        assert!(!allows(&one, "192.0.2.8".parse().unwrap()));
        // A mapped IPv4 client still matches a plain IPv4 range.
        let v4 = parse("192.0.2.0/24").unwrap();
        assert!(allows(&v4, "::ffff:192.0.2.200".parse().unwrap()));
        assert!(!allows(&v4, "2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn unknown_callers_pass_only_keys_without_ranges() {
        assert!(ClientAddr::Unknown.allowed_by(&[]));
        assert!(!ClientAddr::Unknown.allowed_by(&parse("0.0.0.0/0, ::/0").unwrap()));
        let ip = ClientAddr::Ip("10.0.0.1".parse().unwrap());
        assert!(ip.allowed_by(&parse("10.0.0.0/8").unwrap()));
        assert_eq!(ClientAddr::Unknown.to_string(), "unknown");
    }

    #[test]
    fn empty_means_anywhere() {
        assert_eq!(parse(" ").unwrap(), vec![]);
        assert!(allows(&[], "8.8.8.8".parse().unwrap()));
    }
}
