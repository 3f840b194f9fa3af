//! Map layouts shared by the edge's eBPF programs (`sallyport-edge-ebpf`) and its loader (`sallyport-edge`).
//!
//! Everything here is `#[repr(C)]` plain data, read by the kernel side and written by user space (or the other
//! way round for counters). Addresses are 16 bytes everywhere: IPv4 addresses are stored IPv4-mapped
//! (`::ffff:a.b.c.d`), so one map serves both families. Ports are stored in network byte order, exactly as they
//! appear in packets, so the data path never swaps bytes.
#![no_std]

/// Name of the XDP ingress program in the object file.
pub const XDP_PROGRAM: &str = "sallyport_ingress";
/// Name of the TC egress program in the object file.
pub const TC_PROGRAM: &str = "sallyport_egress";

/// Map names, as the loader looks them up.
pub mod maps {
    /// `Array<EdgeConfig>` with one entry.
    pub const CONFIG: &str = "CONFIG";
    /// `HashMap<u32 ifindex, u32 role>`, see [`super::Role`].
    pub const INTERFACES: &str = "INTERFACES";
    /// `HashMap<[u8; 16] address, u32 ifindex>`: the appliance's own addresses.
    pub const OWN_ADDRESSES: &str = "OWN_ADDRESSES";
    /// `LpmTrie<[u8; 16], BlockEntry>`: sources dropped before anything else.
    pub const BLOCKLIST: &str = "BLOCKLIST";
    /// `LruHashMap<FlowKey, u64 last seen ns>`: flows the appliance opened, filled on egress.
    pub const FLOWS: &str = "FLOWS";
    /// `LruHashMap<[u8; 16] source, RateState>`: the per-source new-flow token buckets.
    pub const RATE: &str = "RATE";
    /// `PerCpuArray<u64>` indexed by [`super::Reason`]: packets per verdict reason.
    pub const COUNTERS: &str = "COUNTERS";
}

/// Capacity of the flow map; the least recently used flow goes first when it is full.
pub const FLOW_CAPACITY: u32 = 65_536;
/// Capacity of the blocklist.
pub const BLOCKLIST_CAPACITY: u32 = 16_384;
/// Capacity of the rate-limit map (sources tracked at once).
pub const RATE_CAPACITY: u32 = 65_536;
/// Capacity of the own-address map.
pub const OWN_ADDRESS_CAPACITY: u32 = 256;
/// Capacity of the interface map.
pub const INTERFACE_CAPACITY: u32 = 64;
/// IPv6 extension headers followed before the program gives up and drops.
pub const MAX_EXTENSION_HEADERS: usize = 6;
/// IPv6 sources are rate limited per /64: one host usually holds a whole /64.
pub const IPV6_RATE_PREFIX_BYTES: usize = 8;

/// What an interface is for.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Users reach the portal here: the portal port is open, plus replies of the appliance's own flows.
    Public = 1,
    /// Targets live here: only replies of the appliance's own flows (and ARP, ND, DHCP) come in.
    Internal = 2,
}

impl Role {
    /// "public" or "internal", as the configuration spells it.
    pub const fn label(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::Internal => "internal",
        }
    }
}

/// Global settings of the data path.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeConfig {
    /// The portal port (TCP and UDP), network byte order.
    pub portal_port_be: u16,
    /// Reserved, zero.
    pub reserved: u16,
    /// New flows per second allowed per source on the portal port; 0 turns the limit off.
    pub rate_per_second: u32,
    /// Burst of new flows allowed above the rate.
    pub rate_burst: u32,
    /// A TCP flow the appliance opened accepts replies this long after its last outbound packet.
    pub tcp_flow_timeout_s: u32,
    /// The same for UDP (DNS, NTP).
    pub udp_flow_timeout_s: u32,
    /// Reserved, zero.
    pub reserved2: u32,
}

/// A blocklist value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    /// `CLOCK_MONOTONIC` nanoseconds after which the entry no longer applies (user space sweeps it later).
    pub expires_ns: u64,
}

/// A flow the appliance opened, as its outbound packets show it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    /// IP protocol number (6 TCP, 17 UDP).
    pub protocol: u8,
    /// Zero padding (hashed as part of the key).
    pub padding: [u8; 3],
    /// The appliance's port, network byte order.
    pub local_port_be: u16,
    /// The peer's port, network byte order.
    pub remote_port_be: u16,
    /// The appliance's address (IPv4-mapped for IPv4).
    pub local: [u8; 16],
    /// The peer's address (IPv4-mapped for IPv4).
    pub remote: [u8; 16],
}

impl FlowKey {
    /// The key of a flow seen from the appliance's side: its own address and port, then the peer's
    /// (ports in network byte order). Ingress and egress both build keys this way, so a reply finds the
    /// entry its outbound packet made.
    pub const fn new(
        protocol: u8,
        local: [u8; 16],
        local_port_be: u16,
        remote: [u8; 16],
        remote_port_be: u16,
    ) -> FlowKey {
        FlowKey {
            protocol,
            padding: [0; 3],
            local_port_be,
            remote_port_be,
            local,
            remote,
        }
    }
}

/// A per-source token bucket for new portal flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateState {
    /// Tokens left, in thousandths of a flow.
    pub milli_tokens: u64,
    /// When the bucket was last refilled, `CLOCK_MONOTONIC` nanoseconds.
    pub last_ns: u64,
}

/// XDP verdicts as the kernel numbers them.
pub mod verdict {
    /// `XDP_ABORTED`.
    pub const ABORTED: u32 = 0;
    /// `XDP_DROP`.
    pub const DROP: u32 = 1;
    /// `XDP_PASS`.
    pub const PASS: u32 = 2;
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, $label:literal, $pass:literal; )*) => {
        /// Why the ingress program passed or dropped a packet; the index of its counter.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reason {
            $( $(#[$doc])* $name = $value, )*
        }

        impl Reason {
            /// Every reason, in counter order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// Stable snake_case label (metrics, logs).
            pub const fn label(self) -> &'static str {
                match self { $(Reason::$name => $label,)* }
            }

            /// True when packets with this reason are passed to the kernel.
            pub const fn passes(self) -> bool {
                match self { $(Reason::$name => $pass,)* }
            }
        }
    };
}

reasons! {
    /// TCP to the portal port of an own address on a public interface.
    PortalTcp = 0, "portal_tcp", true;
    /// UDP (QUIC) to the portal port of an own address on a public interface.
    PortalUdp = 1, "portal_udp", true;
    /// A reply of a flow the appliance opened (targets, DNS, NTP).
    FlowReply = 2, "flow_reply", true;
    /// ARP.
    Arp = 3, "arp", true;
    /// IPv6 neighbour discovery (router/neighbour solicitation and advertisement, redirect) with hop limit 255.
    NeighbourDiscovery = 4, "neighbour_discovery", true;
    /// A DHCP or DHCPv6 server's answer to the appliance's client.
    Dhcp = 5, "dhcp", true;
    /// An ICMP error about a flow the appliance has (path MTU discovery, unreachable).
    IcmpRelated = 6, "icmp_related", true;
    /// The source is in the blocklist.
    Blocklisted = 7, "blocklisted", false;
    /// The source opened new portal flows faster than the rate limit.
    RateLimited = 8, "rate_limited", false;
    /// TCP or UDP to a port that is not open (or the portal port on an internal interface).
    ClosedPort = 9, "closed_port", false;
    /// The portal port, but to an address that is not the appliance's (broadcast, another host).
    NotOwnAddress = 10, "not_own_address", false;
    /// ICMP or ICMPv6 that is not neighbour discovery or a related error (echo requests among them).
    Icmp = 11, "icmp", false;
    /// An IP fragment: the ports are not in every fragment, so no fragment is let in.
    Fragment = 12, "fragment", false;
    /// An IP protocol other than TCP, UDP, ICMP and ICMPv6 (or an IPv6 chain ending in none).
    Protocol = 13, "protocol", false;
    /// An EtherType other than IPv4, IPv6 and ARP, or more than two VLAN tags.
    EtherType = 14, "ethertype", false;
    /// A header cut short or inconsistent (lengths, versions): what cannot be parsed is dropped.
    Malformed = 15, "malformed", false;
    /// More IPv6 extension headers than the program follows.
    ExtensionChain = 16, "extension_chain", false;
    /// The packet arrived on an interface the edge was not configured for.
    UnknownInterface = 17, "unknown_interface", false;
}

/// Number of counters.
pub const REASON_COUNT: u32 = 18;

/// Maps an IPv4 address to the 16-byte form the maps use.
pub const fn ipv4_mapped(octets: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3],
    ]
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is `#[repr(C)]`, `Copy`, has no padding the kernel could see uninitialised (padding is
    // explicit fields) and every bit pattern is a valid value.
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::EdgeConfig {}
    // SAFETY: as above.
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::BlockEntry {}
    // SAFETY: as above.
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    #[allow(unsafe_code)]
    unsafe impl aya::Pod for super::RateState {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_dense_and_labelled() {
        assert_eq!(Reason::ALL.len() as u32, REASON_COUNT);
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as u32, index as u32, "{reason:?} out of order");
            assert!(!reason.label().is_empty());
        }
    }

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<EdgeConfig>(), 24);
        assert_eq!(core::mem::size_of::<FlowKey>(), 40);
        assert_eq!(core::mem::size_of::<RateState>(), 16);
        assert_eq!(core::mem::size_of::<BlockEntry>(), 8);
    }
}
