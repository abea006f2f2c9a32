//! `iprange::parse` on arbitrary strings: when it accepts, `format` then `parse` gives the
//! same networks back, and `allows` never panics and admits each network's own addresses.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use tokenauth::iprange::{allows, format, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(nets) = parse(text) else {
        return;
    };
    let formatted = format(&nets);
    assert_eq!(
        parse(&formatted).as_ref(),
        Ok(&nets),
        "{text:?} formatted as {formatted:?}"
    );
    assert_eq!(format(&parse(&formatted).unwrap()), formatted);

    let probes: [IpAddr; 6] = [
        "0.0.0.0".parse().unwrap(),
        "10.1.2.3".parse().unwrap(),
        "255.255.255.255".parse().unwrap(),
        "::".parse().unwrap(),
        "::ffff:10.1.2.3".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ];
    for addr in probes {
        let _ = allows(&nets, addr);
    }
    for net in &nets {
        for addr in [net.network(), net.broadcast(), net.addr()] {
            assert!(
                allows(&nets, addr),
                "{text:?} does not allow its own {addr}"
            );
        }
        if let IpAddr::V4(v4) = net.network() {
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            assert!(allows(&nets, mapped), "{text:?} does not allow {mapped}");
        }
    }
});
