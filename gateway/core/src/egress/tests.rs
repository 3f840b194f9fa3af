//! Table-driven tests of host parsing and the egress verdicts.

use super::*;

fn policy() -> EgressPolicy {
    EgressPolicy::new(
        vec![
            "10.0.0.0/8".parse().unwrap(),
            "fd12:3456::/32".parse().unwrap(),
            "64:ff9b::/96".parse().unwrap(),
            "64:ff9b:1::/48".parse().unwrap(),
            "::ffff:0:0:0/96".parse().unwrap(),
            "2002::/16".parse().unwrap(),
        ],
        vec!["10.0.0.1".parse().unwrap()],
    )
}

/// Parses `text` as a target host and judges it, as the relay does for IP literals.
fn verdict(text: &str) -> Result<IpAddr, String> {
    match parse_host(text).map_err(|e| e.to_string())? {
        Host::Ip(ip) => policy().check(ip).map_err(|d| format!("{d:?}")),
        Host::Name(name) => Err(format!("name {name}")),
    }
}

#[test]
fn forbidden_addresses_in_every_encoding() {
    let cases: &[(&str, &str)] = &[
        ("127.0.0.1", "Loopback"),
        ("127.1", "Loopback"),
        ("2130706433", "Loopback"),
        ("0x7f000001", "Loopback"),
        ("0x7f.0.0.1", "Loopback"),
        ("0177.0.0.1", "Loopback"),
        ("017700000001", "Loopback"),
        ("127.000.000.001", "Loopback"),
        ("::1", "Loopback"),
        ("[::1]", "Loopback"),
        ("::ffff:127.0.0.1", "Loopback"),
        ("::ffff:7f00:1", "Loopback"),
        ("[::ffff:127.0.0.1]", "Loopback"),
        ("::127.0.0.1", "Loopback"),
        ("64:ff9b::127.0.0.1", "Loopback"),
        ("2002:7f00:0001::", "Loopback"),
        // IPv4-translated (SIIT, RFC 7915).
        ("::ffff:0:127.0.0.1", "Loopback"),
        ("::ffff:0:7f00:1", "Loopback"),
        // Local-use NAT64 (RFC 8215): the IPv4 after a /96, /64, /56 and /48 network-specific prefix.
        ("64:ff9b:1::127.0.0.1", "Loopback"),
        ("64:ff9b:1:0:7f:0:100:0", "Loopback"),
        ("64:ff9b:1:7f:0:1::", "Loopback"),
        ("64:ff9b:1:7f00:0:100::", "Loopback"),
        // The reserved "u" octet (bits 64 to 71) does not hide the address.
        ("64:ff9b:1:0:ff7f:0:100:0", "Loopback"),
        // Conservative: 10.1.2.127 after a /64 reads as 127.0.0.0 after a /96, and is refused.
        ("64:ff9b:1:0:a:102:7f00:0", "Loopback"),
        ("0.0.0.0", "Unspecified"),
        ("0", "Unspecified"),
        ("::", "Unspecified"),
        ("::ffff:0:0.0.0.0", "Unspecified"),
        ("64:ff9b:1::", "Unspecified"),
        ("169.254.169.254", "Metadata"),
        ("2852039166", "Metadata"),
        ("0xa9fea9fe", "Metadata"),
        ("0251.0376.0251.0376", "Metadata"),
        ("169.254.43518", "Metadata"),
        ("::ffff:169.254.169.254", "Metadata"),
        ("::ffff:a9fe:a9fe", "Metadata"),
        ("64:ff9b::a9fe:a9fe", "Metadata"),
        ("::ffff:0:169.254.169.254", "Metadata"),
        ("::ffff:0:a9fe:a9fe", "Metadata"),
        ("::ffff:0:168.63.129.16", "Metadata"),
        ("64:ff9b:1::a9fe:a9fe", "Metadata"),
        ("64:ff9b:1:0:a9:fea9:fe00:0", "Metadata"),
        ("64:ff9b:1:a9:fe:a9fe::", "Metadata"),
        ("64:ff9b:1:a9fe:a9:fe00::", "Metadata"),
        ("64:ff9b:1::100.100.100.200", "Metadata"),
        ("168.63.129.16", "Metadata"),
        ("100.100.100.200", "Metadata"),
        ("fd00:ec2::254", "Metadata"),
        ("169.254.1.1", "LinkLocal"),
        ("fe80::1", "LinkLocal"),
        ("::ffff:0:169.254.1.1", "LinkLocal"),
        ("64:ff9b:1::169.254.1.1", "LinkLocal"),
        ("224.0.0.1", "Multicast"),
        ("ff02::1", "Multicast"),
        ("255.255.255.255", "Reserved"),
        ("4294967295", "Reserved"),
        ("10.0.0.1", "OwnAddress"),
        ("::ffff:10.0.0.1", "OwnAddress"),
        ("64:ff9b::10.0.0.1", "OwnAddress"),
        ("2002:a00:1::", "OwnAddress"),
        ("::ffff:0:10.0.0.1", "OwnAddress"),
        ("64:ff9b:1::10.0.0.1", "OwnAddress"),
        ("64:ff9b:1:0:a:0:100:0", "OwnAddress"),
        ("64:ff9b:1:a:0:1::", "OwnAddress"),
        ("64:ff9b:1:a00:0:100::", "OwnAddress"),
        ("192.168.1.10", "OutsideNetworks"),
        ("8.8.8.8", "OutsideNetworks"),
        ("172.16.0.1", "OutsideNetworks"),
        ("2001:db8::1", "OutsideNetworks"),
    ];
    for (text, expected) in cases {
        assert_eq!(verdict(text), Err((*expected).to_owned()), "{text}");
    }
    assert!(cases.len() >= 40);
}

#[test]
fn allowed_addresses_come_back_canonical() {
    assert_eq!(verdict("10.1.2.3"), Ok("10.1.2.3".parse().unwrap()));
    assert_eq!(verdict("10.66051"), Ok("10.1.2.3".parse().unwrap()));
    assert_eq!(verdict("0xa.1.2.3"), Ok("10.1.2.3".parse().unwrap()));
    assert_eq!(verdict("::ffff:10.1.2.3"), Ok("10.1.2.3".parse().unwrap()));
    // Inside translation prefixes an allowed IPv4 passes, and the translated address is what is dialled
    // (it reaches the IPv4 host only through the translator).
    for text in [
        "64:ff9b::10.1.2.3",
        "2002:a01:203::",
        "::ffff:0:10.1.2.3",
        "64:ff9b:1::10.1.2.3",
        "64:ff9b:1:0:a:102:300:0",
        "64:ff9b:1:a:1:203::",
        "64:ff9b:1:a01:2:300::",
    ] {
        assert_eq!(verdict(text), Ok(text.parse().unwrap()), "{text}");
    }
    assert_eq!(verdict("fd12:3456::5"), Ok("fd12:3456::5".parse().unwrap()));
}

#[test]
fn malformed_hosts_are_refused_not_resolved() {
    for text in [
        "",
        "256.0.0.1",
        "1.2.3.4.5",
        "0x1g.0.0.1",
        "08.0.0.1",
        "1.2.3.256",
        "1.2.65536",
        "99999999999",
        "fe80::1%eth0",
        "[::1",
        "a..b",
        "-a.example",
        "a.1",
        "host.0x10",
    ] {
        assert!(
            parse_host(text).is_err(),
            "{text:?} should be refused, got {:?}",
            parse_host(text)
        );
    }
}

#[test]
fn names_stay_names() {
    assert_eq!(
        parse_host("Web-1.Example.COM."),
        Ok(Host::Name("web-1.example.com".into()))
    );
    assert_eq!(parse_host("localhost"), Ok(Host::Name("localhost".into())));
    assert_eq!(
        parse_host("1a.example"),
        Ok(Host::Name("1a.example".into()))
    );
}
