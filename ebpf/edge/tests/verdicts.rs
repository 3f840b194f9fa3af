//! The edge's verdict table, run in the kernel with `BPF_PROG_TEST_RUN`: crafted frames of every protocol and
//! port class, malformed ones, fragments, IPv6 extension chains, VLANs, blocklisted sources and flow replies.
//! Each case checks the verdict and that exactly its reason's counter rose by one.
//!
//! Needs root (loading eBPF); without it the test fails and says so. The packets never leave the kernel's
//! test harness: nothing is sent on any network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod packets;

use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::IpNet;
use packets::*;
use sallyport_edge::{Edge, EdgeSettings, Reason, Role, verdict};

const OWN4: [u8; 4] = [10, 0, 0, 1];
const CLIENT4: [u8; 4] = [198, 51, 100, 7];
const TARGET4: [u8; 4] = [10, 9, 9, 9];
const RESOLVER4: [u8; 4] = [10, 0, 0, 53];
const LOOPBACK_IFINDEX: u32 = 1;

fn own6() -> Ipv6Addr {
    "2001:db8::1".parse().unwrap()
}
fn client6() -> Ipv6Addr {
    "2001:db8:1::7".parse().unwrap()
}
fn target6() -> Ipv6Addr {
    "2001:db8:9::9".parse().unwrap()
}

/// Loads a fresh edge whose test runs see the loopback device as an interface of `role`.
fn edge(settings: &EdgeSettings, role: Role) -> Edge {
    let mut edge = Edge::load(settings).unwrap_or_else(|error| {
        panic!("the verdict table runs the real program in the kernel and needs root: {error}")
    });
    edge.set_interface_role(LOOPBACK_IFINDEX, role).unwrap();
    edge.add_own_address(std::net::Ipv4Addr::from(OWN4).into(), LOOPBACK_IFINDEX)
        .unwrap();
    edge.add_own_address(own6().into(), LOOPBACK_IFINDEX)
        .unwrap();
    edge
}

/// Runs one frame and checks its verdict and counters.
fn check(edge: &Edge, name: &str, frame: &[u8], expected: Reason) {
    let before = edge.counters().unwrap();
    let got = edge
        .test_ingress(frame)
        .unwrap_or_else(|error| panic!("case {name:?}: test run failed: {error}"));
    let after = edge.counters().unwrap();
    let want = if expected.passes() {
        verdict::PASS
    } else {
        verdict::DROP
    };
    let risen: Vec<(Reason, u64)> = after
        .by_reason
        .iter()
        .zip(&before.by_reason)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((reason, a), (_, b))| (*reason, a - b))
        .collect();
    assert_eq!(
        (got, risen.as_slice()),
        (want, [(expected, 1)].as_slice()),
        "case {name:?}: (verdict, counters risen) differ (pass is {}, drop {})",
        verdict::PASS,
        verdict::DROP
    );
}

fn v4_tcp(dst: [u8; 4], port: u16, flags: u8) -> Vec<u8> {
    V4::new(CLIENT4, dst, TCP).frame(&tcp(50000, port, flags))
}

fn v4_udp(dst: [u8; 4], port: u16, payload: &[u8]) -> Vec<u8> {
    V4::new(CLIENT4, dst, UDP).frame(&udp(50000, port, payload))
}

fn v6_tcp(dst: Ipv6Addr, extensions: &[(u8, usize)], port: u16) -> Vec<u8> {
    ipv6_frame(client6(), dst, extensions, TCP, &tcp(50000, port, SYN))
}

fn nd(kind: u8, hop_limit: u8) -> Vec<u8> {
    let dst: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    let src: Ipv6Addr = "fe80::2".parse().unwrap();
    ethernet(
        0x86dd,
        &[],
        &ipv6(src, dst, hop_limit, &[], ICMPV6, &icmp(kind, 0, &[0; 16])),
    )
}

#[test]
fn verdict_table() {
    let edge = edge(&EdgeSettings::default(), Role::Public);

    // Flows the appliance opened, as its TC egress program sees them leave.
    let outbound_ssh = V4::new(OWN4, TARGET4, TCP).frame(&tcp(40000, 22, SYN));
    let outbound_dns = V4::new(OWN4, RESOLVER4, UDP).frame(&udp(5353, 53, &[0; 12]));
    let outbound_ssh6 = ipv6_frame(own6(), target6(), &[], TCP, &tcp(40001, 22, SYN));
    let flows_before = edge.flow_count().unwrap();
    for frame in [&outbound_ssh, &outbound_dns, &outbound_ssh6] {
        edge.test_egress(frame).unwrap();
    }
    // A portal reply (from 443) is not a flow of ours: inbound portal traffic passes anyway.
    edge.test_egress(&V4::new(OWN4, CLIENT4, TCP).frame(&tcp(443, 50000, SYN | ACK)))
        .unwrap();
    assert_eq!(
        edge.flow_count().unwrap(),
        flows_before + 3,
        "egress flows recorded"
    );

    let reply_ssh = V4::new(TARGET4, OWN4, TCP).frame(&tcp(22, 40000, SYN | ACK));
    let mut quoted_ours = V4::new(OWN4, TARGET4, TCP).packet(&tcp(40000, 22, ACK));
    quoted_ours.truncate(28);
    let mut quoted_portal = V4::new(OWN4, CLIENT4, TCP).packet(&tcp(443, 50000, ACK));
    quoted_portal.truncate(28);
    let mut quoted_other = V4::new(OWN4, TARGET4, TCP).packet(&tcp(40999, 22, ACK));
    quoted_other.truncate(28);
    let mut quoted_ours6 = ipv6(own6(), target6(), 64, &[], TCP, &tcp(40001, 22, ACK));
    quoted_ours6.truncate(48);
    let router = [10, 0, 0, 254];

    let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
        // The portal, both families and both transports.
        ("tcp syn to 443", v4_tcp(OWN4, 443, SYN), Reason::PortalTcp),
        ("tcp ack to 443", v4_tcp(OWN4, 443, ACK), Reason::PortalTcp),
        (
            "quic initial to 443",
            v4_udp(OWN4, 443, &quic_initial()),
            Reason::PortalUdp,
        ),
        (
            "quic short header to 443",
            v4_udp(OWN4, 443, &quic_short()),
            Reason::PortalUdp,
        ),
        (
            "empty udp to 443",
            v4_udp(OWN4, 443, &[]),
            Reason::PortalUdp,
        ),
        (
            "ipv6 tcp to 443",
            v6_tcp(own6(), &[], 443),
            Reason::PortalTcp,
        ),
        (
            "ipv6 quic to 443",
            ipv6_frame(
                client6(),
                own6(),
                &[],
                UDP,
                &udp(50000, 443, &quic_initial()),
            ),
            Reason::PortalUdp,
        ),
        // Every other port is closed.
        ("tcp 22", v4_tcp(OWN4, 22, SYN), Reason::ClosedPort),
        ("tcp 80", v4_tcp(OWN4, 80, SYN), Reason::ClosedPort),
        ("tcp 8443", v4_tcp(OWN4, 8443, SYN), Reason::ClosedPort),
        ("tcp 3389", v4_tcp(OWN4, 3389, SYN), Reason::ClosedPort),
        ("tcp 442", v4_tcp(OWN4, 442, SYN), Reason::ClosedPort),
        ("tcp 444", v4_tcp(OWN4, 444, SYN), Reason::ClosedPort),
        (
            "tcp 443 byte-swapped (47873)",
            v4_tcp(OWN4, 47873, SYN),
            Reason::ClosedPort,
        ),
        ("udp 53", v4_udp(OWN4, 53, &[0; 12]), Reason::ClosedPort),
        ("udp 123", v4_udp(OWN4, 123, &[0; 48]), Reason::ClosedPort),
        (
            "udp 68 to server port 67",
            v4_udp(OWN4, 67, &[0; 12]),
            Reason::ClosedPort,
        ),
        ("ipv6 tcp 22", v6_tcp(own6(), &[], 22), Reason::ClosedPort),
        // The portal port, but not to the appliance.
        (
            "tcp 443 to another host",
            v4_tcp([10, 0, 0, 99], 443, SYN),
            Reason::NotOwnAddress,
        ),
        (
            "udp 443 to broadcast",
            v4_udp([10, 0, 0, 255], 443, &[]),
            Reason::NotOwnAddress,
        ),
        (
            "ipv6 tcp 443 to another host",
            v6_tcp("2001:db8::99".parse().unwrap(), &[], 443),
            Reason::NotOwnAddress,
        ),
        // Link layer.
        ("arp", arp(), Reason::Arp),
        ("lldp", ethernet(0x88cc, &[], &[0; 40]), Reason::EtherType),
        (
            "pppoe discovery",
            ethernet(0x8863, &[], &[0; 40]),
            Reason::EtherType,
        ),
        ("ipx", ethernet(0x8137, &[], &[0; 40]), Reason::EtherType),
        // (The kernel's test run refuses frames shorter than an Ethernet header, as drivers do.)
        (
            "ipv6 ethertype, nothing after",
            ethernet(0x86dd, &[], &[]),
            Reason::Malformed,
        ),
        (
            "ethernet header only",
            ethernet(0x0800, &[], &[]),
            Reason::Malformed,
        ),
        // VLANs.
        (
            "802.1q tcp 443",
            ethernet(
                0x0800,
                &[(0x8100, 7)],
                &V4::new(CLIENT4, OWN4, TCP).packet(&tcp(50000, 443, SYN)),
            ),
            Reason::PortalTcp,
        ),
        (
            "q-in-q tcp 443",
            ethernet(
                0x0800,
                &[(0x88a8, 100), (0x8100, 7)],
                &V4::new(CLIENT4, OWN4, TCP).packet(&tcp(50000, 443, SYN)),
            ),
            Reason::PortalTcp,
        ),
        (
            "802.1q tcp 22",
            ethernet(
                0x0800,
                &[(0x8100, 7)],
                &V4::new(CLIENT4, OWN4, TCP).packet(&tcp(50000, 22, SYN)),
            ),
            Reason::ClosedPort,
        ),
        (
            "802.1q ipv6 tcp 443",
            ethernet(
                0x86dd,
                &[(0x8100, 7)],
                &ipv6(client6(), own6(), 64, &[], TCP, &tcp(50000, 443, SYN)),
            ),
            Reason::PortalTcp,
        ),
        (
            "three vlan tags",
            ethernet(
                0x0800,
                &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)],
                &V4::new(CLIENT4, OWN4, TCP).packet(&tcp(50000, 443, SYN)),
            ),
            Reason::EtherType,
        ),
        (
            "vlan tag cut short",
            ethernet(0x8100, &[], &[0, 7]),
            Reason::Malformed,
        ),
        // IPv4 header shapes.
        (
            "ipv4 options, tcp 443",
            {
                let mut ip = V4::new(CLIENT4, OWN4, TCP);
                ip.options = vec![0x01; 8];
                ip.frame(&tcp(50000, 443, SYN))
            },
            Reason::PortalTcp,
        ),
        (
            "ipv4 40 option bytes, tcp 22",
            {
                let mut ip = V4::new(CLIENT4, OWN4, TCP);
                ip.options = vec![0x01; 40];
                ip.frame(&tcp(50000, 22, SYN))
            },
            Reason::ClosedPort,
        ),
        (
            "ipv4 header cut at 19 bytes",
            ethernet(0x0800, &[], &V4::new(CLIENT4, OWN4, TCP).packet(&[])[..19]),
            Reason::Malformed,
        ),
        (
            "ipv4 ihl 4",
            {
                let mut ip = V4::new(CLIENT4, OWN4, TCP);
                ip.version_ihl = Some(0x44);
                ip.frame(&tcp(50000, 443, SYN))
            },
            Reason::Malformed,
        ),
        (
            "ipv4 ihl 15 but 20 bytes present",
            {
                let mut ip = V4::new(CLIENT4, OWN4, TCP);
                ip.version_ihl = Some(0x4f);
                ethernet(0x0800, &[], &ip.packet(&[0; 8]))
            },
            Reason::Malformed,
        ),
        (
            "version 6 under the ipv4 ethertype",
            {
                let mut ip = V4::new(CLIENT4, OWN4, TCP);
                ip.version_ihl = Some(0x65);
                ip.frame(&tcp(50000, 443, SYN))
            },
            Reason::Malformed,
        ),
        (
            "total length shorter than the header",
            {
                let mut ip = V4::new(CLIENT4, OWN4, TCP);
                ip.total_len = Some(12);
                ip.frame(&tcp(50000, 443, SYN))
            },
            Reason::Malformed,
        ),
        (
            "tcp header cut to 2 bytes",
            V4::new(CLIENT4, OWN4, TCP).frame(&tcp(50000, 443, SYN)[..2]),
            Reason::Malformed,
        ),
        (
            "tcp to 443 cut before its flags",
            V4::new(CLIENT4, OWN4, TCP).frame(&tcp(50000, 443, SYN)[..12]),
            Reason::Malformed,
        ),
        // Fragments.
        (
            "ipv4 first fragment to 443",
            {
                let mut ip = V4::new(CLIENT4, OWN4, TCP);
                ip.flags_fragment = 0x2000;
                ip.frame(&tcp(50000, 443, SYN))
            },
            Reason::Fragment,
        ),
        (
            "ipv4 later fragment",
            {
                let mut ip = V4::new(CLIENT4, OWN4, UDP);
                ip.flags_fragment = 0x00b9;
                ip.frame(&[0; 64])
            },
            Reason::Fragment,
        ),
        (
            "ipv6 fragment header",
            v6_tcp(own6(), &[(44, 8)], 443),
            Reason::Fragment,
        ),
        (
            "ipv6 fragment after hop-by-hop",
            v6_tcp(own6(), &[(0, 8), (44, 8)], 443),
            Reason::Fragment,
        ),
        // IPv6 extension chains.
        (
            "ipv6 hop-by-hop, tcp 443",
            v6_tcp(own6(), &[(0, 8)], 443),
            Reason::PortalTcp,
        ),
        (
            "ipv6 hop-by-hop, routing, destination options, tcp 443",
            v6_tcp(own6(), &[(0, 16), (43, 24), (60, 8)], 443),
            Reason::PortalTcp,
        ),
        (
            "ipv6 destination options, tcp 22",
            v6_tcp(own6(), &[(60, 8)], 22),
            Reason::ClosedPort,
        ),
        (
            "ipv6 six extension headers, tcp 443",
            v6_tcp(own6(), &[(60, 8); 6], 443),
            Reason::PortalTcp,
        ),
        (
            "ipv6 seven extension headers",
            v6_tcp(own6(), &[(60, 8); 7], 443),
            Reason::ExtensionChain,
        ),
        (
            "ipv6 extension header cut short",
            ethernet(0x86dd, &[], &ipv6(client6(), own6(), 64, &[], 60, &[6])),
            Reason::Malformed,
        ),
        (
            "ipv6 extension length beyond the packet",
            ethernet(
                0x86dd,
                &[],
                &ipv6(client6(), own6(), 64, &[], 60, &[6, 200, 0, 0, 0, 0, 0, 0]),
            ),
            Reason::Malformed,
        ),
        (
            "ipv6 no next header",
            ethernet(0x86dd, &[], &ipv6(client6(), own6(), 64, &[], 59, &[])),
            Reason::Protocol,
        ),
        (
            "ipv6 esp",
            ethernet(0x86dd, &[], &ipv6(client6(), own6(), 64, &[], 50, &[0; 32])),
            Reason::Protocol,
        ),
        (
            "ipv6 header cut short",
            ethernet(0x86dd, &[], &[0x60, 0, 0, 0, 0, 8]),
            Reason::Malformed,
        ),
        // Other protocols.
        (
            "gre",
            V4::new(CLIENT4, OWN4, 47).frame(&[0; 24]),
            Reason::Protocol,
        ),
        (
            "sctp",
            V4::new(CLIENT4, OWN4, 132).frame(&[0; 24]),
            Reason::Protocol,
        ),
        (
            "ipip",
            V4::new(CLIENT4, OWN4, 4).frame(&V4::new(CLIENT4, OWN4, TCP).packet(&tcp(1, 443, SYN))),
            Reason::Protocol,
        ),
        // ICMP and neighbour discovery.
        (
            "icmp echo request",
            V4::new(CLIENT4, OWN4, ICMP).frame(&icmp(8, 0, &[0; 32])),
            Reason::Icmp,
        ),
        (
            "icmp timestamp request",
            V4::new(CLIENT4, OWN4, ICMP).frame(&icmp(13, 0, &[0; 12])),
            Reason::Icmp,
        ),
        (
            "icmpv6 echo request",
            ipv6_frame(client6(), own6(), &[], ICMPV6, &icmp(128, 0, &[0; 32])),
            Reason::Icmp,
        ),
        (
            "neighbour solicitation",
            nd(135, 255),
            Reason::NeighbourDiscovery,
        ),
        (
            "neighbour advertisement",
            nd(136, 255),
            Reason::NeighbourDiscovery,
        ),
        (
            "router advertisement",
            nd(134, 255),
            Reason::NeighbourDiscovery,
        ),
        (
            "neighbour solicitation from off-link (hop limit 64)",
            nd(135, 64),
            Reason::Icmp,
        ),
        (
            "icmp fragmentation needed about our ssh flow",
            V4::new(router, OWN4, ICMP).frame(&icmp(3, 4, &quoted_ours)),
            Reason::IcmpRelated,
        ),
        (
            "icmp unreachable about a portal reply",
            V4::new(router, OWN4, ICMP).frame(&icmp(3, 4, &quoted_portal)),
            Reason::IcmpRelated,
        ),
        (
            "icmp unreachable about no flow of ours",
            V4::new(router, OWN4, ICMP).frame(&icmp(3, 1, &quoted_other)),
            Reason::Icmp,
        ),
        (
            "icmp unreachable with its quote cut short",
            V4::new(router, OWN4, ICMP).frame(&icmp(3, 1, &quoted_ours[..22])),
            Reason::Malformed,
        ),
        (
            "icmpv6 packet too big about our ssh flow",
            ipv6_frame(target6(), own6(), &[], ICMPV6, &icmp(2, 0, &quoted_ours6)),
            Reason::IcmpRelated,
        ),
        // DHCP answers to the appliance's client.
        (
            "dhcp offer",
            V4::new([10, 0, 0, 254], [255, 255, 255, 255], UDP).frame(&udp(67, 68, &[0; 240])),
            Reason::Dhcp,
        ),
        (
            "dhcpv6 reply",
            ipv6_frame(
                "fe80::1".parse().unwrap(),
                own6(),
                &[],
                UDP,
                &udp(547, 546, &[0; 40]),
            ),
            Reason::Dhcp,
        ),
        // Replies of flows the appliance opened.
        ("ssh target's reply", reply_ssh.clone(), Reason::FlowReply),
        (
            "reply from the wrong port",
            V4::new(TARGET4, OWN4, TCP).frame(&tcp(23, 40000, SYN | ACK)),
            Reason::ClosedPort,
        ),
        (
            "reply from the wrong host",
            V4::new([10, 9, 9, 8], OWN4, TCP).frame(&tcp(22, 40000, SYN | ACK)),
            Reason::ClosedPort,
        ),
        (
            "udp reply on a tcp flow",
            V4::new(TARGET4, OWN4, UDP).frame(&udp(22, 40000, &[0; 8])),
            Reason::ClosedPort,
        ),
        (
            "dns answer",
            V4::new(RESOLVER4, OWN4, UDP).frame(&udp(53, 5353, &[0; 40])),
            Reason::FlowReply,
        ),
        (
            "ipv6 ssh target's reply",
            ipv6_frame(target6(), own6(), &[], TCP, &tcp(22, 40001, SYN | ACK)),
            Reason::FlowReply,
        ),
    ];
    assert!(cases.len() >= 50, "the table has {} cases", cases.len());
    for (name, frame, expected) in &cases {
        check(&edge, name, frame, *expected);
    }

    // The blocklist comes before everything, flow replies included.
    let mut edge = edge;
    edge.block("198.51.100.0/24".parse().unwrap(), Duration::from_secs(60))
        .unwrap();
    edge.block("2001:db8:1::/64".parse().unwrap(), Duration::from_secs(60))
        .unwrap();
    edge.block("10.9.9.9/32".parse().unwrap(), Duration::from_secs(60))
        .unwrap();
    check(
        &edge,
        "blocklisted /24 to 443",
        &v4_tcp(OWN4, 443, SYN),
        Reason::Blocklisted,
    );
    check(
        &edge,
        "blocklisted /64 to 443",
        &v6_tcp(own6(), &[], 443),
        Reason::Blocklisted,
    );
    check(
        &edge,
        "blocklisted flow reply",
        &reply_ssh,
        Reason::Blocklisted,
    );
    check(
        &edge,
        "neighbour of a blocked network",
        &V4::new([198, 51, 101, 7], OWN4, TCP).frame(&tcp(50000, 443, SYN)),
        Reason::PortalTcp,
    );
    let blocked = edge.blocked().unwrap();
    assert_eq!(blocked.len(), 3, "{blocked:?}");
    assert!(
        blocked
            .iter()
            .any(|b| b.network == "198.51.100.0/24".parse::<IpNet>().unwrap())
    );
    edge.unblock("10.9.9.9/32".parse().unwrap()).unwrap();
    check(&edge, "unblocked flow reply", &reply_ssh, Reason::FlowReply);

    // An entry stops applying when it expires, before user space sweeps it.
    edge.block("198.51.100.7/32".parse().unwrap(), Duration::from_millis(1))
        .unwrap();
    edge.unblock("198.51.100.0/24".parse().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    check(
        &edge,
        "expired block",
        &v4_tcp(OWN4, 443, SYN),
        Reason::PortalTcp,
    );
    assert_eq!(edge.sweep_expired().unwrap(), 1);
}

#[test]
fn internal_interfaces_open_no_portal() {
    let edge = edge(&EdgeSettings::default(), Role::Internal);
    edge.test_egress(&V4::new(OWN4, TARGET4, TCP).frame(&tcp(40000, 22, SYN)))
        .unwrap();
    check(
        &edge,
        "internal tcp 443",
        &v4_tcp(OWN4, 443, SYN),
        Reason::ClosedPort,
    );
    check(
        &edge,
        "internal quic",
        &v4_udp(OWN4, 443, &quic_initial()),
        Reason::ClosedPort,
    );
    check(
        &edge,
        "internal flow reply",
        &V4::new(TARGET4, OWN4, TCP).frame(&tcp(22, 40000, ACK)),
        Reason::FlowReply,
    );
    check(&edge, "internal arp", &arp(), Reason::Arp);
}

#[test]
fn unconfigured_interfaces_drop_everything() {
    let edge = Edge::load(&EdgeSettings::default()).expect("loading the edge needs root");
    check(
        &edge,
        "unknown interface, tcp 443",
        &v4_tcp(OWN4, 443, SYN),
        Reason::UnknownInterface,
    );
    check(
        &edge,
        "unknown interface, arp",
        &arp(),
        Reason::UnknownInterface,
    );
}

#[test]
fn new_portal_flows_are_rate_limited_per_source() {
    let settings = EdgeSettings {
        new_flows_per_second: 1,
        new_flow_burst: 2,
        ..EdgeSettings::default()
    };
    let edge = edge(&settings, Role::Public);
    check(
        &edge,
        "first syn",
        &v4_tcp(OWN4, 443, SYN),
        Reason::PortalTcp,
    );
    check(
        &edge,
        "second syn",
        &v4_tcp(OWN4, 443, SYN),
        Reason::PortalTcp,
    );
    check(
        &edge,
        "third syn over the burst",
        &v4_tcp(OWN4, 443, SYN),
        Reason::RateLimited,
    );
    check(
        &edge,
        "established traffic is not limited",
        &v4_tcp(OWN4, 443, ACK),
        Reason::PortalTcp,
    );
    check(
        &edge,
        "a quic initial counts too",
        &v4_udp(OWN4, 443, &quic_initial()),
        Reason::RateLimited,
    );
    check(
        &edge,
        "quic short headers are not limited",
        &v4_udp(OWN4, 443, &quic_short()),
        Reason::PortalUdp,
    );
    check(
        &edge,
        "another source has its own bucket",
        &V4::new([198, 51, 100, 8], OWN4, TCP).frame(&tcp(50000, 443, SYN)),
        Reason::PortalTcp,
    );
    // IPv6 sources share a bucket per /64.
    let from = |host: &str| {
        ipv6_frame(
            host.parse().unwrap(),
            own6(),
            &[],
            TCP,
            &tcp(50000, 443, SYN),
        )
    };
    check(
        &edge,
        "ipv6 first",
        &from("2001:db8:1::1"),
        Reason::PortalTcp,
    );
    check(
        &edge,
        "ipv6 same /64",
        &from("2001:db8:1::2"),
        Reason::PortalTcp,
    );
    check(
        &edge,
        "ipv6 same /64 over the burst",
        &from("2001:db8:1::3"),
        Reason::RateLimited,
    );
    check(
        &edge,
        "ipv6 another /64",
        &from("2001:db8:2::1"),
        Reason::PortalTcp,
    );
    // The bucket refills at the configured rate.
    std::thread::sleep(Duration::from_millis(1100));
    check(
        &edge,
        "after a second",
        &v4_tcp(OWN4, 443, SYN),
        Reason::PortalTcp,
    );
}
