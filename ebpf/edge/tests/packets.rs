//! A small builder of crafted frames for the verdict tests: well-formed ones and the malformed ones a hostile
//! network sends (truncated headers, bad lengths, fragments, extension chains). No checksums: the edge never
//! reads them, and the kernel checks them later for what passes.
#![allow(dead_code, missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::net::{Ipv4Addr, Ipv6Addr};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// An Ethernet frame carrying `payload` as `ethertype`, after the given VLAN tags (TPID, VID).
pub fn ethernet(ethertype: u16, vlans: &[(u16, u16)], payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&MAC_A);
    frame.extend_from_slice(&MAC_B);
    for (tpid, vid) in vlans {
        frame.extend_from_slice(&tpid.to_be_bytes());
        frame.extend_from_slice(&vid.to_be_bytes());
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// IPv4 header fields a test may vary.
#[derive(Clone)]
pub struct V4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    /// Option bytes (padded to a multiple of four).
    pub options: Vec<u8>,
    /// Flags and fragment offset, as on the wire (0x2000 = more fragments).
    pub flags_fragment: u16,
    /// Overrides the version/IHL byte.
    pub version_ihl: Option<u8>,
    /// Overrides the total length.
    pub total_len: Option<u16>,
}

impl V4 {
    pub fn new(src: [u8; 4], dst: [u8; 4], protocol: u8) -> Self {
        Self {
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            protocol,
            ttl: 64,
            options: Vec::new(),
            flags_fragment: 0x4000,
            version_ihl: None,
            total_len: None,
        }
    }

    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut options = self.options.clone();
        while !options.len().is_multiple_of(4) {
            options.push(0);
        }
        let header_len = 20 + options.len();
        let total = (header_len + payload.len()) as u16;
        let mut ip = vec![self.version_ihl.unwrap_or(0x40 | (header_len / 4) as u8), 0];
        ip.extend_from_slice(&self.total_len.unwrap_or(total).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34]);
        ip.extend_from_slice(&self.flags_fragment.to_be_bytes());
        ip.extend_from_slice(&[self.ttl, self.protocol, 0, 0]);
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        ip.extend_from_slice(&options);
        ip.extend_from_slice(payload);
        ip
    }

    pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
        ethernet(0x0800, &[], &self.packet(payload))
    }
}

/// IPv6 with an extension-header chain: each entry is (header type, total length in bytes, a multiple of 8).
pub fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    extensions: &[(u8, usize)],
    protocol: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut chain = Vec::new();
    for (index, (_, length)) in extensions.iter().enumerate() {
        let next = extensions
            .get(index + 1)
            .map(|(kind, _)| *kind)
            .unwrap_or(protocol);
        let mut header = vec![0u8; *length];
        header[0] = next;
        header[1] = (length / 8 - 1) as u8;
        chain.extend_from_slice(&header);
    }
    let first = extensions
        .first()
        .map(|(kind, _)| *kind)
        .unwrap_or(protocol);
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&((chain.len() + payload.len()) as u16).to_be_bytes());
    ip.push(first);
    ip.push(hop_limit);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&chain);
    ip.extend_from_slice(payload);
    ip
}

pub fn ipv6_frame(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    extensions: &[(u8, usize)],
    protocol: u8,
    payload: &[u8],
) -> Vec<u8> {
    ethernet(
        0x86dd,
        &[],
        &ipv6(src, dst, 64, extensions, protocol, payload),
    )
}

pub fn tcp(source: u16, destination: u16, flags: u8) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&source.to_be_bytes());
    header.extend_from_slice(&destination.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    header
}

pub fn udp(source: u16, destination: u16, payload: &[u8]) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&source.to_be_bytes());
    header.extend_from_slice(&destination.to_be_bytes());
    header.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    header.extend_from_slice(&[0, 0]);
    header.extend_from_slice(payload);
    header
}

/// An ICMP or ICMPv6 message: type, code, four bytes of rest-of-header, then `body`.
pub fn icmp(kind: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![kind, code, 0, 0, 0, 0, 0, 0];
    message.extend_from_slice(body);
    message
}

/// A QUIC Initial's first bytes (long header, type 0) as a UDP payload.
pub fn quic_initial() -> Vec<u8> {
    let mut payload = vec![0xc3, 0, 0, 0, 1, 8];
    payload.extend_from_slice(&[0x11; 8]);
    payload.extend_from_slice(&[0; 64]);
    payload
}

/// A QUIC short-header packet (an established connection).
pub fn quic_short() -> Vec<u8> {
    let mut payload = vec![0x43];
    payload.extend_from_slice(&[0x22; 40]);
    payload
}

pub fn arp() -> Vec<u8> {
    ethernet(
        0x0806,
        &[],
        &[
            0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0x0a, 10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1,
        ],
    )
}
