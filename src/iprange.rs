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

/// Whether `addr` may use a key with these ranges (no ranges: anywhere). IPv4-mapped IPv6
/// addresses (::ffff:a.b.c.d, as a dual-stack socket reports them) match IPv4 ranges.
pub fn allows(ranges: &[IpNet], addr: IpAddr) -> bool {
    if ranges.is_empty() {
        return true;
    }
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    };
    ranges.iter().any(|n| n.contains(&addr))
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

    #[test]
    fn empty_means_anywhere() {
        assert_eq!(parse(" ").unwrap(), vec![]);
        assert!(allows(&[], "8.8.8.8".parse().unwrap()));
    }
}
