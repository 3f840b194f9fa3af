//! Bounds-checked header parsing shared by the ingress and egress programs: Ethernet with up to two VLAN tags,
//! IPv4 with options, IPv6 with its extension-header chain, and the IP header quoted inside an ICMP error.
//!
//! Every read checks the packet end first (the verifier insists, and a truncated header must become a drop,
//! never a guess). Addresses come out in the 16-byte IPv4-mapped form the maps use.

use sallyport_edge_common::{MAX_EXTENSION_HEADERS, Reason, ipv4_mapped};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERNET_HEADER: usize = 14;
const VLAN_TAG: usize = 4;
const IPV6_HEADER: usize = 40;

/// The packet between its first byte and its end, as the program context gives them.
pub struct Bytes {
    start: usize,
    end: usize,
}

impl Bytes {
    /// The packet from `start` (inclusive) to `end` (exclusive).
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// The byte at `offset`, if the packet is that long.
    #[inline(always)]
    pub fn u8_at(&self, offset: usize) -> Option<u8> {
        let at = self.start + offset;
        if at + 1 > self.end {
            return None;
        }
        // SAFETY: `at` is inside the packet, checked against its end just above.
        Some(unsafe { *(at as *const u8) })
    }

    /// Two bytes at `offset` exactly as they are in the packet (network byte order kept).
    #[inline(always)]
    pub fn raw_u16(&self, offset: usize) -> Option<u16> {
        let at = self.start + offset;
        if at + 2 > self.end {
            return None;
        }
        // SAFETY: both bytes are inside the packet; the read is unaligned on purpose.
        Some(unsafe { core::ptr::read_unaligned(at as *const u16) })
    }

    /// A big-endian u16 at `offset`.
    #[inline(always)]
    pub fn be_u16(&self, offset: usize) -> Option<u16> {
        self.raw_u16(offset).map(u16::from_be)
    }

    /// `N` bytes at `offset`.
    #[inline(always)]
    pub fn array<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let at = self.start + offset;
        if at + N > self.end {
            return None;
        }
        // SAFETY: all N bytes are inside the packet; the read is unaligned on purpose.
        Some(unsafe { core::ptr::read_unaligned(at as *const [u8; N]) })
    }
}

/// What the link layer carries.
pub enum Parsed {
    /// An ARP packet.
    Arp,
    /// An IP packet whose header parsed.
    Ip(Ip),
}

/// An IP header, either family.
pub struct Ip {
    /// Source address, 16-byte form.
    pub src: [u8; 16],
    /// Destination address, 16-byte form.
    pub dst: [u8; 16],
    /// True for IPv6.
    pub v6: bool,
    /// TTL or hop limit.
    pub hop_limit: u8,
    /// What follows the IP header (and, for IPv6, its extension headers).
    pub next: Next,
}

/// What follows the IP header.
pub enum Next {
    /// A transport header of this protocol at this offset.
    Transport {
        /// IP protocol number.
        protocol: u8,
        /// Offset of the transport header from the packet start.
        offset: usize,
    },
    /// A fragment (IPv4 with MF or an offset, or an IPv6 fragment header).
    Fragment,
    /// More IPv6 extension headers than the program follows.
    ChainTooLong,
    /// IPv6 "no next header", or an IPsec header: nothing the appliance accepts.
    None,
}

/// Parses the link and network layers.
#[inline(always)]
pub fn parse(bytes: &Bytes) -> Result<Parsed, Reason> {
    let mut l3 = ETHERNET_HEADER;
    let mut ethertype = bytes.be_u16(12).ok_or(Reason::Malformed)?;
    // Up to two VLAN tags (802.1Q, or 802.1ad outside 802.1Q); a third is not something a host receives.
    if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        ethertype = bytes.be_u16(l3 + 2).ok_or(Reason::Malformed)?;
        l3 += VLAN_TAG;
        if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
            ethertype = bytes.be_u16(l3 + 2).ok_or(Reason::Malformed)?;
            l3 += VLAN_TAG;
            if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                return Err(Reason::EtherType);
            }
        }
    }
    match ethertype {
        ETHERTYPE_ARP => Ok(Parsed::Arp),
        ETHERTYPE_IPV4 => ipv4(bytes, l3).map(Parsed::Ip),
        ETHERTYPE_IPV6 => ipv6(bytes, l3).map(Parsed::Ip),
        _ => Err(Reason::EtherType),
    }
}

#[inline(always)]
fn ipv4(bytes: &Bytes, l3: usize) -> Result<Ip, Reason> {
    let version_ihl = bytes.u8_at(l3).ok_or(Reason::Malformed)?;
    if version_ihl >> 4 != 4 {
        return Err(Reason::Malformed);
    }
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    if header_len < 20 {
        return Err(Reason::Malformed);
    }
    let total_len = bytes.be_u16(l3 + 2).ok_or(Reason::Malformed)? as usize;
    if total_len < header_len {
        return Err(Reason::Malformed);
    }
    // The fixed fields are read before the variable-length check below: the verifier cannot carry a bound
    // proven for `l3 + header_len` over to constant offsets, while the compiler would happily drop these
    // checks after that one.
    let flags_fragment = bytes.be_u16(l3 + 6).ok_or(Reason::Malformed)?;
    let ttl = bytes.u8_at(l3 + 8).ok_or(Reason::Malformed)?;
    let protocol = bytes.u8_at(l3 + 9).ok_or(Reason::Malformed)?;
    let src = bytes.array::<4>(l3 + 12).ok_or(Reason::Malformed)?;
    let dst = bytes.array::<4>(l3 + 16).ok_or(Reason::Malformed)?;
    // The whole header, options included, must be there.
    bytes.u8_at(l3 + header_len - 1).ok_or(Reason::Malformed)?;
    // More-fragments set, or a non-zero offset: a fragment.
    let next = if flags_fragment & 0x3fff != 0 {
        Next::Fragment
    } else {
        Next::Transport {
            protocol,
            offset: l3 + header_len,
        }
    };
    Ok(Ip {
        src: ipv4_mapped(src),
        dst: ipv4_mapped(dst),
        v6: false,
        hop_limit: ttl,
        next,
    })
}

#[inline(always)]
fn ipv6(bytes: &Bytes, l3: usize) -> Result<Ip, Reason> {
    let version = bytes.u8_at(l3).ok_or(Reason::Malformed)?;
    if version >> 4 != 6 {
        return Err(Reason::Malformed);
    }
    let mut next_header = bytes.u8_at(l3 + 6).ok_or(Reason::Malformed)?;
    let hop_limit = bytes.u8_at(l3 + 7).ok_or(Reason::Malformed)?;
    let src = bytes.array::<16>(l3 + 8).ok_or(Reason::Malformed)?;
    let dst = bytes.array::<16>(l3 + 24).ok_or(Reason::Malformed)?;
    let mut offset = l3 + IPV6_HEADER;
    let mut next = Next::ChainTooLong;
    // One pass more than the headers followed, so that the last one can still name a transport protocol.
    for _ in 0..=MAX_EXTENSION_HEADERS {
        match next_header {
            // Hop-by-hop options, routing, destination options: skip by their length.
            0 | 43 | 60 => {
                let following = bytes.u8_at(offset).ok_or(Reason::Malformed)?;
                let units = bytes.u8_at(offset + 1).ok_or(Reason::Malformed)?;
                next_header = following;
                offset += (units as usize + 1) * 8;
            }
            44 => {
                next = Next::Fragment;
                break;
            }
            // No next header, ESP, AH.
            59 | 50 | 51 => {
                next = Next::None;
                break;
            }
            protocol => {
                next = Next::Transport { protocol, offset };
                break;
            }
        }
    }
    Ok(Ip {
        src,
        dst,
        v6: true,
        hop_limit,
        next,
    })
}

/// The start of a packet of ours quoted in an ICMP error: enough to find its flow.
pub struct Quoted {
    /// Its protocol.
    pub protocol: u8,
    /// Its source (should be an own address), 16-byte form.
    pub src: [u8; 16],
    /// Its destination.
    pub dst: [u8; 16],
    /// Its source port, network byte order.
    pub source_port_be: u16,
    /// Its destination port, network byte order.
    pub destination_port_be: u16,
}

/// The IPv4 header and ports quoted by an ICMP error starting at `offset`.
#[inline(always)]
pub fn embedded_ipv4(bytes: &Bytes, offset: usize) -> Option<Quoted> {
    let version_ihl = bytes.u8_at(offset)?;
    if version_ihl >> 4 != 4 {
        return None;
    }
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    if header_len < 20 {
        return None;
    }
    let protocol = bytes.u8_at(offset + 9)?;
    let src = bytes.array::<4>(offset + 12)?;
    let dst = bytes.array::<4>(offset + 16)?;
    let source_port_be = bytes.raw_u16(offset + header_len)?;
    let destination_port_be = bytes.raw_u16(offset + header_len + 2)?;
    Some(Quoted {
        protocol,
        src: ipv4_mapped(src),
        dst: ipv4_mapped(dst),
        source_port_be,
        destination_port_be,
    })
}

/// The IPv6 header and ports quoted by an ICMPv6 error starting at `offset` (no extension headers followed).
#[inline(always)]
pub fn embedded_ipv6(bytes: &Bytes, offset: usize) -> Option<Quoted> {
    if bytes.u8_at(offset)? >> 4 != 6 {
        return None;
    }
    let protocol = bytes.u8_at(offset + 6)?;
    let src = bytes.array::<16>(offset + 8)?;
    let dst = bytes.array::<16>(offset + 24)?;
    let source_port_be = bytes.raw_u16(offset + IPV6_HEADER)?;
    let destination_port_be = bytes.raw_u16(offset + IPV6_HEADER + 2)?;
    Some(Quoted {
        protocol,
        src,
        dst,
        source_port_be,
        destination_port_be,
    })
}
