//! sallyport-edge: loads Sallyport's eBPF edge into the kernel, attaches it (XDP on ingress, TC on egress),
//! configures it, manages its blocklist and reads its counters; [`DropHistory`] keeps the last hour of
//! drops per reason from once-a-minute samples.
//!
//! The programs themselves live in `ebpf/program` and are built by this crate's build script; their maps are
//! described in `sallyport-edge-common`. Dropping an [`Edge`] detaches everything it attached: the kernel
//! holds the attachments as links owned by this process, so they also go when the process dies.
// The workspace forbids unsafe code here; should that ever give way, each unsafe block still says why it holds.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::net::IpAddr;
use std::time::Duration;

use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray};
use aya::programs::tc::TcAttachType;
use aya::programs::xdp::XdpMode;
use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, include_bytes_aligned};
use ipnet::IpNet;
use nix::time::{ClockId, clock_gettime};
use sallyport_edge_common::{BlockEntry, EdgeConfig, FlowKey, ipv4_mapped, maps};

pub use sallyport_edge_common::{Reason, Role, verdict};

mod history;
pub use history::{DropHistory, HISTORY_MINUTES, MinuteDrops};

/// The compiled programs, embedded at build time.
static PROGRAM: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sallyport-edge.bpf.o"));

/// What can go wrong loading or driving the edge.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The kernel refused the object (verifier, missing privileges).
    #[error("loading the eBPF programs failed (needs root or CAP_BPF+CAP_NET_ADMIN): {0}")]
    Load(#[from] aya::EbpfError),
    /// A program could not be loaded, attached or run.
    #[error("eBPF program {program}: {source}")]
    Program {
        /// Which program.
        program: &'static str,
        /// Why.
        source: aya::programs::ProgramError,
    },
    /// A map operation failed.
    #[error("eBPF map {map}: {source}")]
    Map {
        /// Which map.
        map: &'static str,
        /// Why.
        source: aya::maps::MapError,
    },
    /// The object lacks something this loader expects (a build mismatch).
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    /// The named interface does not exist.
    #[error("no network interface named {0:?}")]
    UnknownInterface(String),
    /// Reading the interface addresses or the clock failed.
    #[error("{0}")]
    System(String),
}

/// Settings of the data path, applied at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeSettings {
    /// The portal port (TCP and UDP).
    pub portal_port: u16,
    /// New portal flows per second allowed per source (IPv6: per /64); 0 turns the limit off.
    pub new_flows_per_second: u32,
    /// Burst above that rate.
    pub new_flow_burst: u32,
    /// How long after its last outbound packet a TCP flow the appliance opened accepts replies.
    pub tcp_flow_timeout: Duration,
    /// The same for UDP (DNS, NTP).
    pub udp_flow_timeout: Duration,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            portal_port: 443,
            new_flows_per_second: 0,
            new_flow_burst: 20,
            tcp_flow_timeout: Duration::from_secs(5 * 24 * 3600),
            udp_flow_timeout: Duration::from_secs(180),
        }
    }
}

/// How XDP runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver, before the kernel allocates anything for the packet.
    Native,
    /// In the generic network stack (slower; the driver has no XDP support).
    Generic,
}

impl XdpAttachMode {
    /// "native" or "generic".
    pub fn label(self) -> &'static str {
        match self {
            XdpAttachMode::Native => "native",
            XdpAttachMode::Generic => "generic",
        }
    }
}

/// One interface the edge is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Interface name.
    pub interface: String,
    /// Its index.
    pub ifindex: u32,
    /// What it is for.
    pub role: Role,
    /// How XDP runs on it.
    pub mode: XdpAttachMode,
}

/// A source in the blocklist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedSource {
    /// The blocked network.
    pub network: IpNet,
    /// Time left before the entry stops applying.
    pub remaining: Duration,
}

/// Packets seen per verdict reason, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `(reason, packets)` for every reason, in counter order.
    pub by_reason: Vec<(Reason, u64)>,
}

impl Counters {
    /// Packets counted for `reason`.
    pub fn get(&self, reason: Reason) -> u64 {
        self.by_reason
            .iter()
            .find(|(r, _)| *r == reason)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    /// Packets passed.
    pub fn passed(&self) -> u64 {
        self.by_reason
            .iter()
            .filter(|(r, _)| r.passes())
            .map(|(_, n)| n)
            .sum()
    }

    /// Packets dropped.
    pub fn dropped(&self) -> u64 {
        self.by_reason
            .iter()
            .filter(|(r, _)| !r.passes())
            .map(|(_, n)| n)
            .sum()
    }
}

/// The loaded edge: programs in the kernel, maps open, attachments held.
pub struct Edge {
    ebpf: Ebpf,
    interfaces: HashMap<MapData, u32, u32>,
    own_addresses: HashMap<MapData, [u8; 16], u32>,
    blocklist: LpmTrie<MapData, [u8; 16], BlockEntry>,
    counters: PerCpuArray<MapData, u64>,
    attachments: Vec<Attachment>,
}

impl Edge {
    /// Loads both programs (the verifier checks them here) and writes the settings; attaches nothing yet.
    pub fn load(settings: &EdgeSettings) -> Result<Self, EdgeError> {
        let mut ebpf = Ebpf::load(PROGRAM)?;
        let mut config: Array<MapData, EdgeConfig> = take_map(&mut ebpf, maps::CONFIG)?;
        let value = EdgeConfig {
            portal_port_be: settings.portal_port.to_be(),
            reserved: 0,
            rate_per_second: settings.new_flows_per_second,
            rate_burst: settings.new_flow_burst.max(1),
            tcp_flow_timeout_s: seconds(settings.tcp_flow_timeout),
            udp_flow_timeout_s: seconds(settings.udp_flow_timeout),
            reserved2: 0,
        };
        config.set(0, value, 0).map_err(map_error(maps::CONFIG))?;
        let edge = Self {
            interfaces: take_map(&mut ebpf, maps::INTERFACES)?,
            own_addresses: take_map(&mut ebpf, maps::OWN_ADDRESSES)?,
            blocklist: take_map(&mut ebpf, maps::BLOCKLIST)?,
            counters: take_map(&mut ebpf, maps::COUNTERS)?,
            attachments: Vec::new(),
            ebpf,
        };
        let mut edge = edge;
        edge.xdp()?
            .load()
            .map_err(program_error(sallyport_edge_common::XDP_PROGRAM))?;
        edge.tc()?
            .load()
            .map_err(program_error(sallyport_edge_common::TC_PROGRAM))?;
        Ok(edge)
    }

    /// Attaches to `interface`: XDP in native mode (generic when the driver cannot), TC on egress; records
    /// the interface's role and its addresses.
    pub fn attach(&mut self, interface: &str, role: Role) -> Result<&Attachment, EdgeError> {
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|_| EdgeError::UnknownInterface(interface.to_string()))?;
        // The role goes in before the program: a packet must never meet an unknown interface.
        self.set_interface_role(ifindex, role)?;
        self.sync_own_addresses_of(interface, ifindex)?;
        let mode = match self.xdp()?.attach(interface, XdpMode::Driver) {
            Ok(_) => XdpAttachMode::Native,
            Err(native_error) => {
                tracing::warn!(interface, error = %native_error, "native XDP refused; using generic XDP");
                self.xdp()?
                    .attach(interface, XdpMode::Skb)
                    .map_err(program_error(sallyport_edge_common::XDP_PROGRAM))?;
                XdpAttachMode::Generic
            }
        };
        // Kernels before 6.6 have no TCX: aya attaches through netlink, which needs a clsact qdisc and
        // leaves the filter behind if a previous gateway died; remove such a leftover first.
        let _ = aya::programs::tc::qdisc_detach_program(
            interface,
            TcAttachType::Egress,
            sallyport_edge_common::TC_PROGRAM,
        );
        if self.tc()?.attach(interface, TcAttachType::Egress).is_err() {
            let _ = aya::programs::tc::qdisc_add_clsact(interface);
            self.tc()?
                .attach(interface, TcAttachType::Egress)
                .map_err(program_error(sallyport_edge_common::TC_PROGRAM))?;
        }
        tracing::info!(interface, ifindex, role = ?role, mode = mode.label(), "edge attached");
        self.attachments.push(Attachment {
            interface: interface.to_string(),
            ifindex,
            role,
            mode,
        });
        self.attachments
            .last()
            .ok_or(EdgeError::Missing("attachment"))
    }

    /// The interfaces attached so far.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Sets the role of an interface index directly (tests run the program on the loopback device).
    pub fn set_interface_role(&mut self, ifindex: u32, role: Role) -> Result<(), EdgeError> {
        self.interfaces
            .insert(ifindex, role as u32, 0)
            .map_err(map_error(maps::INTERFACES))
    }

    /// Adds one address to the appliance's own addresses.
    pub fn add_own_address(&mut self, address: IpAddr, ifindex: u32) -> Result<(), EdgeError> {
        self.own_addresses
            .insert(address_key(address), ifindex, 0)
            .map_err(map_error(maps::OWN_ADDRESSES))
    }

    /// Re-reads the addresses of every attached interface (DHCP may have changed them) and makes the
    /// own-address map match.
    pub fn sync_own_addresses(&mut self) -> Result<(), EdgeError> {
        let attached: Vec<(String, u32)> = self
            .attachments
            .iter()
            .map(|a| (a.interface.clone(), a.ifindex))
            .collect();
        let mut wanted = Vec::new();
        for (interface, ifindex) in &attached {
            for address in interface_addresses(interface)? {
                wanted.push((address_key(address), *ifindex));
            }
        }
        let present: Vec<[u8; 16]> = self.own_addresses.keys().filter_map(Result::ok).collect();
        for key in present {
            if !wanted.iter().any(|(k, _)| *k == key) {
                let _ = self.own_addresses.remove(&key);
            }
        }
        for (key, ifindex) in wanted {
            self.own_addresses
                .insert(key, ifindex, 0)
                .map_err(map_error(maps::OWN_ADDRESSES))?;
        }
        Ok(())
    }

    fn sync_own_addresses_of(&mut self, interface: &str, ifindex: u32) -> Result<(), EdgeError> {
        for address in interface_addresses(interface)? {
            self.add_own_address(address, ifindex)?;
        }
        Ok(())
    }

    /// Drops every packet from `network` for `duration`, before anything else looks at it.
    pub fn block(&mut self, network: IpNet, duration: Duration) -> Result<(), EdgeError> {
        let expires_ns =
            monotonic_ns()?.saturating_add(duration.as_nanos().min(u64::MAX as u128) as u64);
        self.blocklist
            .insert(&blocklist_key(network), BlockEntry { expires_ns }, 0)
            .map_err(map_error(maps::BLOCKLIST))
    }

    /// Removes `network` from the blocklist (absent is fine).
    pub fn unblock(&mut self, network: IpNet) -> Result<(), EdgeError> {
        match self.blocklist.remove(&blocklist_key(network)) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(EdgeError::Map {
                map: maps::BLOCKLIST,
                source,
            }),
        }
    }

    /// The blocklist entries still in force.
    pub fn blocked(&self) -> Result<Vec<BlockedSource>, EdgeError> {
        let now = monotonic_ns()?;
        let mut blocked = Vec::new();
        for entry in self.blocklist.iter() {
            let (key, value) = entry.map_err(map_error(maps::BLOCKLIST))?;
            if value.expires_ns > now {
                blocked.push(BlockedSource {
                    network: network_of(key),
                    remaining: Duration::from_nanos(value.expires_ns - now),
                });
            }
        }
        Ok(blocked)
    }

    /// Removes expired blocklist entries (the data path already ignores them); returns how many went.
    pub fn sweep_expired(&mut self) -> Result<usize, EdgeError> {
        let now = monotonic_ns()?;
        let expired: Vec<Key<[u8; 16]>> = self
            .blocklist
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, value)| value.expires_ns <= now)
            .map(|(key, _)| key)
            .collect();
        for key in &expired {
            let _ = self.blocklist.remove(key);
        }
        Ok(expired.len())
    }

    /// Packets per verdict reason since load, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, EdgeError> {
        let mut by_reason = Vec::with_capacity(Reason::ALL.len());
        for reason in Reason::ALL {
            let per_cpu = self
                .counters
                .get(&(*reason as u32), 0)
                .map_err(map_error(maps::COUNTERS))?;
            by_reason.push((*reason, per_cpu.iter().sum()));
        }
        Ok(Counters { by_reason })
    }

    /// Runs the XDP program once on `packet` with `BPF_PROG_TEST_RUN` (on the loopback device's queue) and
    /// returns its verdict ([`verdict::PASS`] or [`verdict::DROP`]).
    pub fn test_ingress(&self, packet: &[u8]) -> Result<u32, EdgeError> {
        let program: &Xdp = self
            .ebpf
            .program(sallyport_edge_common::XDP_PROGRAM)
            .ok_or(EdgeError::Missing("XDP program"))?
            .try_into()
            .map_err(program_error(sallyport_edge_common::XDP_PROGRAM))?;
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(packet),
                ..TestRunOptions::new()
            })
            .map_err(program_error(sallyport_edge_common::XDP_PROGRAM))?;
        Ok(result.return_value)
    }

    /// Runs the TC egress program once on `packet`, as if the appliance sent it (records its flow).
    pub fn test_egress(&self, packet: &[u8]) -> Result<u32, EdgeError> {
        let program: &SchedClassifier = self
            .ebpf
            .program(sallyport_edge_common::TC_PROGRAM)
            .ok_or(EdgeError::Missing("TC program"))?
            .try_into()
            .map_err(program_error(sallyport_edge_common::TC_PROGRAM))?;
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(packet),
                ..TestRunOptions::new()
            })
            .map_err(program_error(sallyport_edge_common::TC_PROGRAM))?;
        Ok(result.return_value)
    }

    /// Number of flows the egress program has recorded (for tests and the status page).
    pub fn flow_count(&self) -> Result<usize, EdgeError> {
        let flows: HashMap<&MapData, FlowKey, u64> = self
            .ebpf
            .map(maps::FLOWS)
            .ok_or(EdgeError::Missing(maps::FLOWS))?
            .try_into()
            .map_err(map_error(maps::FLOWS))?;
        Ok(flows.keys().filter(Result::is_ok).count())
    }

    fn xdp(&mut self) -> Result<&mut Xdp, EdgeError> {
        self.ebpf
            .program_mut(sallyport_edge_common::XDP_PROGRAM)
            .ok_or(EdgeError::Missing("XDP program"))?
            .try_into()
            .map_err(program_error(sallyport_edge_common::XDP_PROGRAM))
    }

    fn tc(&mut self) -> Result<&mut SchedClassifier, EdgeError> {
        self.ebpf
            .program_mut(sallyport_edge_common::TC_PROGRAM)
            .ok_or(EdgeError::Missing("TC program"))?
            .try_into()
            .map_err(program_error(sallyport_edge_common::TC_PROGRAM))
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        for attachment in &self.attachments {
            tracing::info!(interface = %attachment.interface, "edge detached");
        }
        // The links themselves go with `self.ebpf`, which detaches them.
    }
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, EdgeError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(EdgeError::Missing(name))?;
    T::try_from(map).map_err(map_error(name))
}

fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> EdgeError {
    move |source| EdgeError::Map { map, source }
}

fn program_error(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> EdgeError {
    move |source| EdgeError::Program { program, source }
}

fn seconds(duration: Duration) -> u32 {
    duration.as_secs().min(u32::MAX as u64) as u32
}

/// The 16-byte map form of an address (IPv4-mapped for IPv4).
pub fn address_key(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => ipv4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn blocklist_key(network: IpNet) -> Key<[u8; 16]> {
    match network {
        IpNet::V4(v4) => Key::new(
            96 + v4.prefix_len() as u32,
            ipv4_mapped(v4.network().octets()),
        ),
        IpNet::V6(v6) => Key::new(v6.prefix_len() as u32, v6.network().octets()),
    }
}

fn network_of(key: Key<[u8; 16]>) -> IpNet {
    let data = key.data();
    let prefix = key.prefix_len();
    let v6 = std::net::Ipv6Addr::from(data);
    match v6.to_ipv4_mapped() {
        Some(v4) if prefix >= 96 => IpNet::new(IpAddr::V4(v4), (prefix - 96) as u8),
        _ => IpNet::new(IpAddr::V6(v6), prefix.min(128) as u8),
    }
    .unwrap_or_else(|_| IpNet::from(IpAddr::V6(v6)))
}

fn interface_addresses(interface: &str) -> Result<Vec<IpAddr>, EdgeError> {
    Ok(local_addresses()?
        .into_iter()
        .filter(|(name, _)| name == interface)
        .map(|(_, address)| address)
        .collect())
}

/// Every IP address of this machine, with the interface that holds it.
pub fn local_addresses() -> Result<Vec<(String, IpAddr)>, EdgeError> {
    let addresses = nix::ifaddrs::getifaddrs()
        .map_err(|error| EdgeError::System(format!("reading interface addresses: {error}")))?;
    Ok(addresses
        .filter_map(|entry| {
            let storage = entry.address?;
            let address = match storage.as_sockaddr_in() {
                Some(v4) => IpAddr::V4(v4.ip()),
                None => IpAddr::V6(storage.as_sockaddr_in6()?.ip()),
            };
            Some((entry.interface_name, address))
        })
        .collect())
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> Result<u64, EdgeError> {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map_err(|error| EdgeError::System(format!("reading the monotonic clock: {error}")))?;
    Ok(now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64)
}
