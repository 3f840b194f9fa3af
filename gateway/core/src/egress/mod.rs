//! Egress rules: which target addresses the gateway may dial (its defence against SSRF).
//!
//! A target is written by an admin (and later typed by a user) as an IP literal or a DNS name. Both go
//! through the same two steps:
//!
//! 1. [`parse_host`] reads the text the way the system resolver would, including the legacy IPv4 forms
//!    `inet_aton` accepts (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`), so no encoding smuggles an address
//!    past the rules. Text that looks numeric but is not a valid address is refused, never sent to DNS.
//! 2. [`EgressPolicy::check`] judges every address a name resolved to (the caller resolves; this crate does
//!    no I/O) and the caller dials exactly the address that was judged, so DNS rebinding between check
//!    and connect is impossible.
//!
//! An address is allowed only when it lies inside a configured network and outside loopback,
//! unspecified, link-local, multicast, broadcast/reserved, cloud metadata services and the gateway's own
//! addresses. IPv4 embedded in IPv6 is judged as the IPv4 it carries: mapped and compatible addresses are
//! dialled as IPv4; inside the translation prefixes (IPv4-translated ::ffff:0:0:0/96, NAT64 64:ff9b::/96 and
//! the local-use 64:ff9b:1::/48 at every RFC 6052 position, 6to4 2002::/16) every IPv4 a translator could
//! read out of the address must pass the IPv4 rules.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// A target host as written: an address, or a name still to be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal in any accepted encoding, already decoded.
    Ip(IpAddr),
    /// A syntactically valid DNS name (lowercased, without a trailing dot).
    Name(String),
}

/// Why a host text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostParseError {
    /// Empty input.
    #[error("the target address is empty")]
    Empty,
    /// Looks like an IP address but is not a valid one.
    #[error("`{0}` is not a valid IP address")]
    BadAddress(String),
    /// Not a valid DNS name.
    #[error("`{0}` is not a valid host name")]
    BadName(String),
}

/// Parses a target host text (IP literal in any encoding, bracketed IPv6, or DNS name).
pub fn parse_host(text: &str) -> Result<Host, HostParseError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(HostParseError::Empty);
    }
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if unbracketed.contains(':') {
        // IPv6. Zone identifiers (`fe80::1%eth0`) are refused: they only make sense for link-local.
        return unbracketed
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| HostParseError::BadAddress(text.to_owned()));
    }
    if looks_numeric(unbracketed) {
        return parse_inet_aton(unbracketed)
            .map(|ip| Host::Ip(IpAddr::V4(ip)))
            .ok_or_else(|| HostParseError::BadAddress(text.to_owned()));
    }
    parse_dns_name(unbracketed).map(Host::Name)
}

/// True when the last dot-separated label is numeric (decimal or 0x-hex): the resolver would treat such
/// text as an address, so it must parse as one or be refused.
fn looks_numeric(text: &str) -> bool {
    let last = text.trim_end_matches('.').rsplit('.').next().unwrap_or("");
    let is_hex = |s: &str| {
        (s.starts_with("0x") || s.starts_with("0X"))
            && s[2..].chars().all(|c| c.is_ascii_hexdigit())
    };
    !last.is_empty() && (last.chars().all(|c| c.is_ascii_digit()) || is_hex(last))
}

/// The IPv4 forms `inet_aton(3)` accepts: one to four parts, each decimal, octal (leading `0`) or hex
/// (`0x`); the last part fills the remaining bytes.
fn parse_inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        values.push(parse_aton_part(part)?);
    }
    let (last, leading) = values.split_last()?;
    let mut addr: u32 = 0;
    for (index, value) in leading.iter().enumerate() {
        if *value > 0xff {
            return None;
        }
        addr |= (*value as u32) << (24 - 8 * index);
    }
    let last_bits = 8 * (4 - leading.len()) as u32;
    if last_bits < 32 && *last >= (1u64 << last_bits) || *last > u32::MAX as u64 {
        return None;
    }
    Some(Ipv4Addr::from(addr | *last as u32))
}

fn parse_aton_part(part: &str) -> Option<u64> {
    if part.is_empty() || part.len() > 12 {
        return None;
    }
    if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        if hex.is_empty() {
            return Some(0); // inet_aton reads a bare "0x" as zero.
        }
        return u64::from_str_radix(hex, 16).ok();
    }
    if part.len() > 1 && part.starts_with('0') {
        return u64::from_str_radix(&part[1..], 8).ok();
    }
    part.parse::<u64>().ok()
}

fn parse_dns_name(text: &str) -> Result<String, HostParseError> {
    let bad = || HostParseError::BadName(text.to_owned());
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(bad());
        }
    }
    Ok(name)
}

/// Why an address may not be dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// 127.0.0.0/8 or ::1.
    Loopback,
    /// 0.0.0.0/8 or ::.
    Unspecified,
    /// 169.254.0.0/16 or fe80::/10.
    LinkLocal,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
    /// 240.0.0.0/4 including the broadcast address.
    Reserved,
    /// A cloud provider's metadata or host service.
    Metadata,
    /// One of the gateway's own addresses.
    OwnAddress,
    /// Not inside any configured network.
    OutsideNetworks,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denied::Loopback => "it is a loopback address",
            Denied::Unspecified => "it is the unspecified address",
            Denied::LinkLocal => "it is a link-local address",
            Denied::Multicast => "it is a multicast address",
            Denied::Reserved => "it is a reserved or broadcast address",
            Denied::Metadata => "it is a cloud metadata service",
            Denied::OwnAddress => "it is one of the gateway's own addresses",
            Denied::OutsideNetworks => "it is outside the configured networks",
        })
    }
}

/// Cloud metadata and host services, refused even inside a configured network.
const METADATA: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), // AWS, GCP, Azure IMDS, OpenStack
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),   // AWS ECS task metadata
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),   // Azure wireserver
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)), // Alibaba Cloud
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)), // AWS IMDS over IPv6
];

/// The networks targets may live in and the gateway's own addresses.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    networks: Vec<IpNet>,
    own_addresses: Vec<IpAddr>,
}

impl EgressPolicy {
    /// A policy allowing the given networks, never the given own addresses.
    pub fn new(networks: Vec<IpNet>, own_addresses: Vec<IpAddr>) -> Self {
        let own_addresses = own_addresses.into_iter().map(canonical).collect();
        EgressPolicy {
            networks,
            own_addresses,
        }
    }

    /// The configured networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    /// Judges one address. The address to dial is the returned canonical form (IPv4-mapped IPv6
    /// becomes IPv4), so the caller dials what was judged.
    ///
    /// The rules apply to the address itself and to every IPv4 address a translation prefix may carry in
    /// it, so loopback, metadata or an own address inside a translation prefix is refused as such.
    pub fn check(&self, addr: IpAddr) -> Result<IpAddr, Denied> {
        let addr = canonical(addr);
        let embedded = embedded_ipv4(addr);
        let judged = || std::iter::once(addr).chain(embedded.iter().copied().map(IpAddr::V4));
        for ip in judged() {
            match ip {
                IpAddr::V4(v4) => always_denied_v4(v4)?,
                IpAddr::V6(v6) => always_denied_v6(v6)?,
            }
        }
        if judged().any(|ip| METADATA.contains(&ip)) {
            return Err(Denied::Metadata);
        }
        if judged().any(|ip| self.own_addresses.contains(&ip)) {
            return Err(Denied::OwnAddress);
        }
        if !self.networks.iter().any(|net| net.contains(&addr)) {
            return Err(Denied::OutsideNetworks);
        }
        Ok(addr)
    }
}

/// IPv4-mapped and IPv4-compatible IPv6 addresses reach IPv4 hosts: judge and dial them as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let seg = v6.segments();
            // Deprecated IPv4-compatible form ::a.b.c.d (but not :: and ::1).
            if seg[..6].iter().all(|s| *s == 0) && !(seg[6] == 0 && seg[7] <= 1) {
                return IpAddr::V4(Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                ));
            }
            addr
        }
        IpAddr::V4(_) => addr,
    }
}

/// Where the IPv4 address sits in an IPv4-embedded IPv6 address: the indices of its four bytes among the
/// sixteen. RFC 6052 section 2.2 places it after a prefix of 32 to 96 bits, skipping byte 8 (bits 64 to 71,
/// the reserved "u" octet); 6to4 (RFC 3056) carries it right after its /16.
type Layout = [usize; 4];

/// RFC 6052 layouts, named after the prefix length they follow.
const AFTER_48: Layout = [6, 7, 9, 10];
const AFTER_56: Layout = [7, 9, 10, 11];
const AFTER_64: Layout = [9, 10, 11, 12];
const AFTER_96: Layout = [12, 13, 14, 15];
const AFTER_16: Layout = [2, 3, 4, 5];

/// A translation prefix: IPv6 addresses inside `prefix`/`len` reach the IPv4 address found at one of
/// `layouts` (through a translator or tunnel, so they are dialled as IPv6 but judged by that IPv4).
struct Translation {
    prefix: Ipv6Addr,
    len: u32,
    layouts: &'static [Layout],
}

/// Every translation prefix the egress rules look inside. Where the operator picks the prefix length (the
/// local-use NAT64 range), the address could be read at any layout a prefix of that length or longer uses,
/// and all of them are judged: the gateway cannot know which one the translator uses. That is conservative:
/// an allowed IPv4 written at one layout may read as a refused one at another (10.1.2.127 after a /64 reads
/// as 127.0.0.0 after a /96) and is then refused too.
const TRANSLATIONS: &[Translation] = &[
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052).
    Translation {
        prefix: Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        len: 96,
        layouts: &[AFTER_96],
    },
    // NAT64 local-use prefix 64:ff9b:1::/48 (RFC 8215): network-specific prefixes of /48 to /96 inside it.
    Translation {
        prefix: Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        len: 48,
        layouts: &[AFTER_48, AFTER_56, AFTER_64, AFTER_96],
    },
    // IPv4-translated addresses ::ffff:0:a.b.c.d in ::ffff:0:0:0/96 (SIIT, RFC 2765 and RFC 7915).
    Translation {
        prefix: Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0),
        len: 96,
        layouts: &[AFTER_96],
    },
    // 6to4 2002::/16 (RFC 3056).
    Translation {
        prefix: Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0),
        len: 16,
        layouts: &[AFTER_16],
    },
];

/// The IPv4 addresses carried inside a translation prefix ([`TRANSLATIONS`]), one per layout it may use.
///
/// Zero padding reads as 0.0.0.0/8 at the layouts a translator does not use (64:ff9b:1::10.1.2.3 reads as
/// 0.0.0.0 after a /48), so such a reading is left out when another layout reads something else; an address
/// that reads as 0.0.0.0/8 everywhere is still judged (and refused as unspecified).
fn embedded_ipv4(addr: IpAddr) -> Vec<Ipv4Addr> {
    let IpAddr::V6(v6) = addr else {
        return Vec::new();
    };
    let bits = u128::from(v6);
    let bytes = v6.octets();
    let Some(translation) = TRANSLATIONS
        .iter()
        .find(|t| (bits ^ u128::from(t.prefix)) >> (128 - t.len) == 0)
    else {
        return Vec::new();
    };
    let read: Vec<Ipv4Addr> = translation
        .layouts
        .iter()
        .map(|layout| Ipv4Addr::from(layout.map(|index| bytes[index])))
        .collect();
    if read.iter().all(|v4| v4.octets()[0] == 0) {
        return read;
    }
    read.into_iter().filter(|v4| v4.octets()[0] != 0).collect()
}

fn always_denied_v4(v4: Ipv4Addr) -> Result<(), Denied> {
    let [a, b, ..] = v4.octets();
    if a == 127 {
        Err(Denied::Loopback)
    } else if a == 0 {
        Err(Denied::Unspecified)
    } else if a == 169 && b == 254 {
        if METADATA.contains(&IpAddr::V4(v4)) {
            Err(Denied::Metadata)
        } else {
            Err(Denied::LinkLocal)
        }
    } else if (224..240).contains(&a) {
        Err(Denied::Multicast)
    } else if a >= 240 {
        Err(Denied::Reserved)
    } else {
        Ok(())
    }
}

fn always_denied_v6(v6: Ipv6Addr) -> Result<(), Denied> {
    let first = v6.segments()[0];
    if v6.is_loopback() {
        Err(Denied::Loopback)
    } else if v6.is_unspecified() {
        Err(Denied::Unspecified)
    } else if first & 0xffc0 == 0xfe80 {
        Err(Denied::LinkLocal)
    } else if v6.is_multicast() {
        Err(Denied::Multicast)
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
