//! Sallyport's edge programs: the XDP ingress filter that leaves only the portal reachable, and the TC egress
//! program that remembers the flows the appliance opens so their replies can come back in.
//!
//! The policy, in the order it is applied to each inbound packet:
//! 1. ARP passes; an EtherType other than IPv4/IPv6/ARP (after up to two VLAN tags) is dropped.
//! 2. A malformed or truncated IP header is dropped.
//! 3. A source in the blocklist (LPM trie, with expiry) is dropped, before anything else looks at the packet.
//! 4. Fragments are dropped (later fragments carry no ports to judge them by).
//! 5. TCP/UDP to the portal port of an own address on a public interface passes, subject to the optional
//!    per-source new-flow rate limit; replies of flows the appliance opened pass; DHCP server answers pass.
//! 6. ICMP errors about a known flow pass; IPv6 neighbour discovery with hop limit 255 passes; other ICMP drops.
//! 7. Everything else is dropped.
//!
//! Every verdict bumps a per-CPU counter named by its [`Reason`].
#![no_std]
#![no_main]

mod parse;

use aya_ebpf::bindings::{TC_ACT_PIPE, xdp_action};
use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::macros::{classifier, map, xdp};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray};
use aya_ebpf::programs::{TcContext, XdpContext};
use sallyport_edge_common::{
    BLOCKLIST_CAPACITY, BlockEntry, EdgeConfig, FLOW_CAPACITY, FlowKey, INTERFACE_CAPACITY,
    IPV6_RATE_PREFIX_BYTES, OWN_ADDRESS_CAPACITY, RATE_CAPACITY, REASON_COUNT, RateState, Reason,
    Role,
};

use parse::{Bytes, Ip, Next, Parsed};

#[map(name = "CONFIG")]
static CONFIG: Array<EdgeConfig> = Array::with_max_entries(1, 0);

#[map(name = "INTERFACES")]
static INTERFACES: HashMap<u32, u32> = HashMap::with_max_entries(INTERFACE_CAPACITY, 0);

#[map(name = "OWN_ADDRESSES")]
static OWN_ADDRESSES: HashMap<[u8; 16], u32> = HashMap::with_max_entries(OWN_ADDRESS_CAPACITY, 0);

#[map(name = "BLOCKLIST")]
static BLOCKLIST: LpmTrie<[u8; 16], BlockEntry> = LpmTrie::with_max_entries(BLOCKLIST_CAPACITY, 0);

#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, u64> = LruHashMap::with_max_entries(FLOW_CAPACITY, 0);

#[map(name = "RATE")]
static RATE: LruHashMap<[u8; 16], RateState> = LruHashMap::with_max_entries(RATE_CAPACITY, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASON_COUNT, 0);

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The XDP ingress filter. It declares multi-buffer support (`frags`): it reads only headers, which are in
/// the first buffer, and without it veth and some drivers turn off large receive offloads for the device.
#[xdp(frags)]
pub fn sallyport_ingress(ctx: XdpContext) -> u32 {
    let reason = ingress_reason(&ctx);
    count(reason);
    if reason.passes() {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

/// The TC egress flow tracker: never drops, only remembers.
#[classifier]
pub fn sallyport_egress(ctx: TcContext) -> i32 {
    // Locally generated packets usually have their headers in the linear area already; pulling makes sure.
    let _ = ctx.pull_data(128);
    let bytes = Bytes::new(ctx.data(), ctx.data_end());
    remember_flow(&bytes);
    TC_ACT_PIPE
}

fn ingress_reason(ctx: &XdpContext) -> Reason {
    let Some(config) = CONFIG.get(0) else {
        return Reason::Malformed;
    };
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: a plain lookup in a map of u32 values; the reference does not outlive this statement.
    let role = match unsafe { INTERFACES.get(ifindex) } {
        Some(role) => *role,
        None => return Reason::UnknownInterface,
    };
    let public = role == Role::Public as u32;
    let bytes = Bytes::new(ctx.data(), ctx.data_end());
    let ip = match parse::parse(&bytes) {
        Ok(Parsed::Arp) => return Reason::Arp,
        Ok(Parsed::Ip(ip)) => ip,
        Err(reason) => return reason,
    };
    if blocklisted(&ip.src) {
        return Reason::Blocklisted;
    }
    let (protocol, l4) = match ip.next {
        Next::Transport { protocol, offset } => (protocol, offset),
        Next::Fragment => return Reason::Fragment,
        Next::ChainTooLong => return Reason::ExtensionChain,
        Next::None => return Reason::Protocol,
    };
    match protocol {
        PROTO_TCP | PROTO_UDP => transport_reason(&bytes, &ip, protocol, l4, config, public),
        PROTO_ICMP if !ip.v6 => icmp_reason(&bytes, l4, config, public),
        PROTO_ICMPV6 if ip.v6 => icmpv6_reason(&bytes, &ip, l4, config, public),
        _ => Reason::Protocol,
    }
}

fn transport_reason(
    bytes: &Bytes,
    ip: &Ip,
    protocol: u8,
    l4: usize,
    config: &EdgeConfig,
    public: bool,
) -> Reason {
    let (Some(source_port), Some(destination_port)) = (bytes.raw_u16(l4), bytes.raw_u16(l4 + 2))
    else {
        return Reason::Malformed;
    };
    if destination_port == config.portal_port_be && public {
        // SAFETY: a plain lookup; only presence matters.
        if unsafe { OWN_ADDRESSES.get(ip.dst) }.is_none() {
            return Reason::NotOwnAddress;
        }
        let new_flow = if protocol == PROTO_TCP {
            // SYN without ACK opens a connection.
            match bytes.u8_at(l4 + 13) {
                Some(flags) => flags & 0x12 == 0x02,
                None => return Reason::Malformed,
            }
        } else {
            // A QUIC Initial: long header form, packet type 0.
            match bytes.u8_at(l4 + 8) {
                Some(first) => first & 0xb0 == 0x80,
                None => false,
            }
        };
        if new_flow && config.rate_per_second != 0 && !rate_allows(&ip.src, ip.v6, config) {
            return Reason::RateLimited;
        }
        return if protocol == PROTO_TCP {
            Reason::PortalTcp
        } else {
            Reason::PortalUdp
        };
    }
    let key = FlowKey::new(protocol, ip.dst, destination_port, ip.src, source_port);
    if flow_is_live(&key, protocol, config) {
        return Reason::FlowReply;
    }
    if protocol == PROTO_UDP {
        let dhcp = if ip.v6 {
            source_port == 547u16.to_be() && destination_port == 546u16.to_be()
        } else {
            source_port == 67u16.to_be() && destination_port == 68u16.to_be()
        };
        if dhcp {
            return Reason::Dhcp;
        }
    }
    Reason::ClosedPort
}

/// ICMP: errors about a flow the appliance has pass (path MTU discovery needs them); the rest drops.
fn icmp_reason(bytes: &Bytes, l4: usize, config: &EdgeConfig, public: bool) -> Reason {
    let Some(kind) = bytes.u8_at(l4) else {
        return Reason::Malformed;
    };
    // Destination unreachable (fragmentation needed among them), time exceeded, parameter problem.
    if !matches!(kind, 3 | 11 | 12) {
        return Reason::Icmp;
    }
    match parse::embedded_ipv4(bytes, l4 + 8) {
        Some(quoted) if related(&quoted, config, public) => Reason::IcmpRelated,
        Some(_) => Reason::Icmp,
        None => Reason::Malformed,
    }
}

/// ICMPv6: neighbour discovery (hop limit 255, so it came from the link) and errors about known flows pass.
fn icmpv6_reason(bytes: &Bytes, ip: &Ip, l4: usize, config: &EdgeConfig, public: bool) -> Reason {
    let Some(kind) = bytes.u8_at(l4) else {
        return Reason::Malformed;
    };
    match kind {
        133..=137 => {
            if ip.hop_limit == 255 {
                Reason::NeighbourDiscovery
            } else {
                Reason::Icmp
            }
        }
        1..=4 => match parse::embedded_ipv6(bytes, l4 + 8) {
            Some(quoted) if related(&quoted, config, public) => Reason::IcmpRelated,
            Some(_) => Reason::Icmp,
            None => Reason::Malformed,
        },
        _ => Reason::Icmp,
    }
}

/// True when an ICMP error quotes a packet of ours: a portal reply, or a flow the appliance opened.
fn related(quoted: &parse::Quoted, config: &EdgeConfig, public: bool) -> bool {
    if quoted.protocol != PROTO_TCP && quoted.protocol != PROTO_UDP {
        return false;
    }
    // SAFETY: a plain lookup; only presence matters.
    let ours = unsafe { OWN_ADDRESSES.get(quoted.src) }.is_some();
    if public && ours && quoted.source_port_be == config.portal_port_be {
        return true;
    }
    let key = FlowKey::new(
        quoted.protocol,
        quoted.src,
        quoted.source_port_be,
        quoted.dst,
        quoted.destination_port_be,
    );
    flow_is_live(&key, quoted.protocol, config)
}

fn flow_is_live(key: &FlowKey, protocol: u8, config: &EdgeConfig) -> bool {
    let Some(last_seen) = FLOWS.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: the pointer comes from this lookup in FLOWS.
    let last_seen = unsafe { SharedU64::new(last_seen) }.load();
    let timeout_s = if protocol == PROTO_TCP {
        config.tcp_flow_timeout_s
    } else {
        config.udp_flow_timeout_s
    };
    now_ns().saturating_sub(last_seen) <= timeout_s as u64 * NANOS_PER_SECOND
}

fn blocklisted(source: &[u8; 16]) -> bool {
    match BLOCKLIST.get(Key::new(128, *source)) {
        Some(entry) => now_ns() < entry.expires_ns,
        None => false,
    }
}

/// The per-source token bucket for new portal flows; IPv6 sources share a bucket per /64.
///
/// Every CPU may update the same bucket at once, so its two fields are read and written whole through
/// [`SharedU64`], never through a reference. Two CPUs refilling one bucket together can leave its count
/// approximate (one of their stores wins), as before; no read is torn and nothing takes a `&mut` to memory
/// another CPU writes.
fn rate_allows(source: &[u8; 16], v6: bool, config: &EdgeConfig) -> bool {
    let mut key = *source;
    if v6 {
        let mut index = IPV6_RATE_PREFIX_BYTES;
        while index < 16 {
            key[index] = 0;
            index += 1;
        }
    }
    let now = now_ns();
    let capacity = config.rate_burst.max(1) as u64 * 1000;
    match RATE.get_ptr_mut(key) {
        Some(state) => {
            // SAFETY: `state` comes from this lookup in RATE and points to a RateState; taking the address of
            // its fields reads and writes nothing.
            let (milli_tokens, last_ns) = unsafe {
                (
                    SharedU64::new(&raw mut (*state).milli_tokens),
                    SharedU64::new(&raw mut (*state).last_ns),
                )
            };
            let elapsed = now
                .saturating_sub(last_ns.load())
                .min(10 * NANOS_PER_SECOND);
            let refill = elapsed * config.rate_per_second as u64 / 1_000_000;
            let tokens = (milli_tokens.load() + refill).min(capacity);
            last_ns.store(now);
            if tokens < 1000 {
                milli_tokens.store(tokens);
                false
            } else {
                milli_tokens.store(tokens - 1000);
                true
            }
        }
        None => {
            let state = RateState {
                milli_tokens: capacity.saturating_sub(1000),
                last_ns: now,
            };
            // A full map evicts the least recently used source; failing to insert still lets this flow in.
            let _ = RATE.insert(key, state, 0);
            true
        }
    }
}

fn remember_flow(bytes: &Bytes) {
    let Ok(Parsed::Ip(ip)) = parse::parse(bytes) else {
        return;
    };
    let Next::Transport { protocol, offset } = ip.next else {
        return;
    };
    if protocol != PROTO_TCP && protocol != PROTO_UDP {
        return;
    }
    let (Some(source_port), Some(destination_port)) =
        (bytes.raw_u16(offset), bytes.raw_u16(offset + 2))
    else {
        return;
    };
    // Portal replies need no entry: inbound portal traffic passes on its own.
    if let Some(config) = CONFIG.get(0)
        && source_port == config.portal_port_be
    {
        return;
    }
    let key = FlowKey::new(protocol, ip.src, source_port, ip.dst, destination_port);
    let now = now_ns();
    match FLOWS.get_ptr_mut(key) {
        Some(last_seen) => {
            // SAFETY: the pointer comes from this lookup in FLOWS.
            unsafe { SharedU64::new(last_seen) }.store(now);
        }
        None => {
            let _ = FLOWS.insert(key, now, 0);
        }
    }
}

/// A u64 inside a value of a shared (not per-CPU) map, which other CPUs may read and write while this program
/// runs: it is read and written whole through its pointer, never through a reference, so nothing here assumes
/// it unaliased or unchanged between two reads.
///
/// The accesses are the kernel's `READ_ONCE`/`WRITE_ONCE`: volatile single loads and stores of an aligned u64,
/// which BPF never tears. `core::sync::atomic::AtomicU64` would be the same in Rust's own terms, but on this
/// target it has only `load` and `store`, and LLVM compiles those only for BPF CPU v4 (kernel 6.6); the
/// appliance runs Debian bookworm's 6.1, so the program is built for the generic CPU. Once that moves on,
/// `load` and `store` here become `AtomicU64::from_ptr(..).load/store(Relaxed)` and nothing else changes.
#[derive(Clone, Copy)]
struct SharedU64(*mut u64);

impl SharedU64 {
    /// # Safety
    ///
    /// `value` must point to a u64 field of a value that a lookup in one of this program's LRU hash maps returned
    /// during this run. Such a value is 8-aligned (the kernel places values at 8-byte boundaries) and stays
    /// allocated while the map exists, which outlives the run: LRU maps preallocate their elements. An element
    /// deleted or evicted meanwhile may be reused for another key; an access then lands in that key's value,
    /// which is still a u64.
    unsafe fn new(value: *mut u64) -> SharedU64 {
        SharedU64(value)
    }

    fn load(self) -> u64 {
        // SAFETY: `new`'s promise: aligned and allocated for the run. A store from another CPU at the same time
        // is a marked access like this one (or the kernel's own copy on update), which BPF does not tear.
        unsafe { self.0.read_volatile() }
    }

    fn store(self, value: u64) {
        // SAFETY: as in `load`.
        unsafe { self.0.write_volatile(value) }
    }
}

fn count(reason: Reason) {
    if let Some(counter) = COUNTERS.get_ptr_mut(reason as u32) {
        // SAFETY: a per-CPU slot: no other CPU writes it, and this program is not re-entered on one CPU.
        unsafe { *counter += 1 }
    }
}

fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The kernel needs a GPL-compatible licence for some helpers; the program is dual-licensed.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
