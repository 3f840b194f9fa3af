//! Table-driven tests of host parsing and the egress verdicts.

use super::*;

fn policy() -> EgressPolicy {
    EgressPolicy::new(
        vec![
            "10.0.0.0/8".parse().unwrap(),
            "fd12:3456::/32".parse().unwrap(),
            "64:ff9b::/96".parse().unwrap(),
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
        ("0.0.0.0", "Unspecified"),
        ("0", "Unspecified"),
        ("::", "Unspecified"),
        ("169.254.169.254", "Metadata"),
        ("2852039166", "Metadata"),
        ("0xa9fea9fe", "Metadata"),
        ("0251.0376.0251.0376", "Metadata"),
        ("169.254.43518", "Metadata"),
        ("::ffff:169.254.169.254", "Metadata"),
        ("::ffff:a9fe:a9fe", "Metadata"),
        ("64:ff9b::a9fe:a9fe", "Metadata"),
        ("168.63.129.16", "Metadata"),
        ("100.100.100.200", "Metadata"),
        ("fd00:ec2::254", "Metadata"),
        ("169.254.1.1", "LinkLocal"),
        ("fe80::1", "LinkLocal"),
        ("224.0.0.1", "Multicast"),
        ("ff02::1", "Multicast"),
        ("255.255.255.255", "Reserved"),
        ("4294967295", "Reserved"),
        ("10.0.0.1", "OwnAddress"),
        ("::ffff:10.0.0.1", "OwnAddress"),
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
