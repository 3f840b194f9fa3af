//! The daemon's configuration: one typed TOML tree, every default in this file, unknown keys rejected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use sallyport_core::display::{ClipboardPolicy, MAX_CLIPBOARD_BYTES};
use sallyport_core::throttle::ThrottleConfig;
use sallyport_portal::PortalConfig;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the state database, recordings, TLS material and signing key live.
    pub state_dir: PathBuf,
    /// The HTTPS portal.
    pub portal: PortalSection,
    /// Logging.
    pub log: LogSection,
    /// Session recording.
    pub recording: RecordingSection,
    /// Limits on terminal sessions.
    pub sessions: SessionsSection,
    /// The XDP edge.
    pub edge: EdgeSection,
    /// The QUIC endpoint for the `sallyport` CLI.
    pub quic: QuicSection,
    /// Desktop (RDP) sessions.
    pub desktop: DesktopSection,
    /// The networks targets may live in (the virtual network and its peers).
    pub networks: Vec<NetworkEntry>,
    /// Identity providers users may sign in with (`[[oidc]]`).
    pub oidc: Vec<sso::OidcEntry>,
    /// Named targets.
    pub targets: Vec<TargetEntry>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("/var/lib/sallyport"),
            portal: PortalSection::default(),
            log: LogSection::default(),
            recording: RecordingSection::default(),
            sessions: SessionsSection::default(),
            edge: EdgeSection::default(),
            quic: QuicSection::default(),
            desktop: DesktopSection::default(),
            networks: Vec::new(),
            oidc: Vec::new(),
            targets: Vec::new(),
        }
    }
}

/// `[portal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalSection {
    /// Address and port to serve HTTPS on.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`. Without both, a self-signed certificate is made once
    /// and kept in the state directory.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Names and addresses the self-signed certificate is issued for.
    pub hostnames: Vec<String>,
    /// The address users open the portal at (`https://bastion.example.org`, with a port when it is not
    /// 443). Identity providers redirect back to it and passkeys are bound to its host name, so single
    /// sign-on and passkeys need it; without it they are off.
    pub public_url: Option<String>,
    /// Allow TLS 1.2 besides TLS 1.3.
    pub allow_tls12: bool,
    /// Minutes of inactivity after which a login ends.
    pub session_idle_minutes: u64,
    /// Hours after which a login ends regardless.
    pub session_max_hours: u64,
    /// Seconds a new connection has to finish its TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive connection
    /// stays open.
    pub header_read_timeout_secs: u64,
    /// Seconds a request's body and its answer may take.
    pub request_timeout_secs: u64,
    /// Most connections open at once from one source address (IPv6: one /64).
    pub max_connections_per_source: usize,
    /// Most connections open at once in all.
    pub max_connections: usize,
    /// Failed logins from one source within `login_source_window_secs` before it must wait.
    pub login_source_max_failures: u32,
    /// Window for counting a source's failed logins, in seconds.
    pub login_source_window_secs: u64,
    /// A source's first wait, in seconds; each further failure doubles it.
    pub login_backoff_initial_secs: u64,
    /// A source's longest wait, in seconds.
    pub login_backoff_max_secs: u64,
    /// Failed logins for one username, from any source, within `login_user_window_secs` before it is
    /// locked.
    pub login_user_max_failures: u32,
    /// Window for counting a username's failed logins, in seconds.
    pub login_user_window_secs: u64,
    /// How long a username stays locked, in seconds.
    pub login_user_lock_secs: u64,
}

impl Default for PortalSection {
    fn default() -> Self {
        // The connection and login limits default to the portal's own defaults, kept in one place.
        let portal = PortalConfig::default();
        let login = &portal.login_throttle;
        PortalSection {
            listen: SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 0], 443)),
            tls_cert: None,
            tls_key: None,
            hostnames: vec!["localhost".into(), "127.0.0.1".into()],
            public_url: None,
            allow_tls12: false,
            session_idle_minutes: 30,
            session_max_hours: 12,
            tls_handshake_timeout_secs: portal.tls_handshake_timeout.as_secs(),
            header_read_timeout_secs: portal.header_read_timeout.as_secs(),
            request_timeout_secs: portal.request_timeout.as_secs(),
            max_connections_per_source: portal.max_connections_per_source,
            max_connections: portal.max_connections,
            login_source_max_failures: login.source_max_failures,
            login_source_window_secs: login.source_window.as_secs(),
            login_backoff_initial_secs: login.backoff_initial.as_secs(),
            login_backoff_max_secs: login.backoff_max.as_secs(),
            login_user_max_failures: login.user_max_failures,
            login_user_window_secs: login.user_window.as_secs(),
            login_user_lock_secs: login.user_lock.as_secs(),
        }
    }
}

impl PortalSection {
    /// The portal's settings from this section.
    pub fn portal_config(&self) -> PortalConfig {
        let secs = Duration::from_secs;
        let defaults = PortalConfig::default();
        PortalConfig {
            public_url: self.public_url(),
            session_idle_timeout: secs(self.session_idle_minutes * 60),
            session_max_age: secs(self.session_max_hours * 3600),
            tls_handshake_timeout: secs(self.tls_handshake_timeout_secs),
            header_read_timeout: secs(self.header_read_timeout_secs),
            request_timeout: secs(self.request_timeout_secs),
            max_connections_per_source: self.max_connections_per_source,
            max_connections: self.max_connections,
            login_throttle: ThrottleConfig {
                source_max_failures: self.login_source_max_failures,
                source_window: secs(self.login_source_window_secs),
                backoff_initial: secs(self.login_backoff_initial_secs),
                backoff_max: secs(self.login_backoff_max_secs),
                user_max_failures: self.login_user_max_failures,
                user_window: secs(self.login_user_window_secs),
                user_lock: secs(self.login_user_lock_secs),
                ..defaults.login_throttle
            },
            ..defaults
        }
    }

    /// `public_url` parsed; [`PortalSection::validate`] has refused one that does not parse.
    fn public_url(&self) -> Option<url::Url> {
        self.public_url
            .as_deref()
            .and_then(|url| sso::parse_public_url(url).ok())
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.public_url {
            sso::parse_public_url(url).with_context(|| format!("portal.public_url {url:?}"))?;
        }
        let positive = [
            (
                "tls_handshake_timeout_secs",
                self.tls_handshake_timeout_secs,
            ),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            (
                "max_connections_per_source",
                self.max_connections_per_source as u64,
            ),
            ("max_connections", self.max_connections as u64),
            (
                "login_source_max_failures",
                self.login_source_max_failures.into(),
            ),
            ("login_source_window_secs", self.login_source_window_secs),
            (
                "login_backoff_initial_secs",
                self.login_backoff_initial_secs,
            ),
            (
                "login_user_max_failures",
                self.login_user_max_failures.into(),
            ),
            ("login_user_window_secs", self.login_user_window_secs),
            ("login_user_lock_secs", self.login_user_lock_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                bail!("portal.{key} must be positive");
            }
        }
        if self.login_backoff_max_secs < self.login_backoff_initial_secs {
            bail!(
                "portal.login_backoff_max_secs must be at least portal.login_backoff_initial_secs"
            );
        }
        Ok(())
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Also log to journald when it is reachable.
    pub journald: bool,
    /// tracing filter directive (e.g. `info`, `sallyport=debug`), overridden by `RUST_LOG`.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            journald: true,
            level: "info".into(),
        }
    }
}

/// `[sessions]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsSection {
    /// End a session after this many seconds without input from the user; 0 turns it off.
    pub idle_timeout_secs: u64,
    /// End a session this many seconds after it started; 0 turns it off.
    pub max_duration_secs: u64,
    /// Most sessions open at once on the gateway.
    pub max_sessions: usize,
    /// Most sessions one user may have open at once.
    pub max_sessions_per_user: usize,
}

impl Default for SessionsSection {
    fn default() -> Self {
        let broker = sallyport_relay::BrokerConfig::default();
        let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs()).unwrap_or(0);
        SessionsSection {
            idle_timeout_secs: secs(broker.idle_timeout),
            max_duration_secs: secs(broker.max_duration),
            max_sessions: broker.max_sessions,
            max_sessions_per_user: broker.max_sessions_per_user,
        }
    }
}

impl SessionsSection {
    /// The broker's settings with these limits.
    pub fn broker_config(&self) -> sallyport_relay::BrokerConfig {
        let optional = |secs: u64| (secs > 0).then(|| std::time::Duration::from_secs(secs));
        sallyport_relay::BrokerConfig {
            idle_timeout: optional(self.idle_timeout_secs),
            max_duration: optional(self.max_duration_secs),
            max_sessions: self.max_sessions,
            max_sessions_per_user: self.max_sessions_per_user,
            ..sallyport_relay::BrokerConfig::default()
        }
    }
}

/// `[recording]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingSection {
    /// Largest chunk before it is written, in KiB.
    pub chunk_max_kib: usize,
    /// Longest a chunk stays open before it is written, in milliseconds (what a crash can lose).
    pub chunk_max_age_ms: u64,
    /// How often a desktop session records a keyframe of its framebuffer (when something changed), in
    /// milliseconds: a reviewer seeking replays at most this much RDP traffic.
    pub desktop_keyframe_interval_ms: u64,
}

impl Default for RecordingSection {
    fn default() -> Self {
        RecordingSection {
            chunk_max_kib: 256,
            chunk_max_age_ms: 1000,
            desktop_keyframe_interval_ms: 10_000,
        }
    }
}

/// `[edge]`: the XDP filter that leaves only the portal port reachable. Without interfaces it is not
/// loaded, and the gateway says so at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeSection {
    /// Refuse to start unless the edge is attached to every listed interface (the appliance sets this).
    pub required: bool,
    /// Interfaces to attach to, each with its role.
    pub interfaces: Vec<EdgeInterfaceEntry>,
    /// Put a source locked out after failed logins into the edge's blocklist for its lockout period.
    pub block_locked_out_sources: bool,
    /// New portal connections per second allowed per source (IPv6: per /64); 0 turns the limit off.
    pub new_flows_per_second: u32,
    /// Burst of new connections allowed above that rate.
    pub new_flow_burst: u32,
    /// Seconds after its last outbound packet that a TCP connection the gateway opened still accepts
    /// replies.
    pub tcp_flow_timeout_secs: u64,
    /// The same for UDP (DNS, NTP).
    pub udp_flow_timeout_secs: u64,
}

impl Default for EdgeSection {
    fn default() -> Self {
        EdgeSection {
            required: false,
            interfaces: Vec::new(),
            block_locked_out_sources: true,
            new_flows_per_second: 0,
            new_flow_burst: 20,
            tcp_flow_timeout_secs: 5 * 24 * 3600,
            udp_flow_timeout_secs: 180,
        }
    }
}

/// `[[edge.interfaces]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeInterfaceEntry {
    /// Interface name (`eth0`).
    pub name: String,
    /// `public`: users reach the portal here; `internal`: targets live here, no portal.
    pub role: EdgeRole,
}

/// What an edge interface is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeRole {
    /// The portal port is open.
    Public,
    /// Only replies of the gateway's own connections come in.
    Internal,
}

impl EdgeSection {
    fn validate(&self) -> anyhow::Result<()> {
        if self.required && self.interfaces.is_empty() {
            bail!("edge.required needs at least one [[edge.interfaces]] entry");
        }
        let mut names = std::collections::HashSet::new();
        for interface in &self.interfaces {
            if interface.name.is_empty() || interface.name.len() > 15 {
                bail!(
                    "edge interface name {:?} is not a Linux interface name",
                    interface.name
                );
            }
            if !names.insert(&interface.name) {
                bail!("edge interface {} is listed twice", interface.name);
            }
        }
        if !self.interfaces.is_empty()
            && !self.interfaces.iter().any(|i| i.role == EdgeRole::Public)
        {
            bail!("no edge interface is public: users could not reach the portal");
        }
        if self.tcp_flow_timeout_secs == 0 || self.udp_flow_timeout_secs == 0 {
            bail!("edge.tcp_flow_timeout_secs and edge.udp_flow_timeout_secs must be positive");
        }
        Ok(())
    }
}

/// `[quic]`: the native client's endpoint, on the portal's address and port over UDP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicSection {
    /// Serve the `sallyport` CLI (and issue its certificates at `/api/cli/login`).
    pub enabled: bool,
    /// Hours a client certificate issued at `sallyport login` stays valid.
    pub certificate_hours: u64,
    /// Seconds without packets after which a connection is closed (the CLI sends keep-alives).
    pub idle_timeout_secs: u64,
    /// Most QUIC connections at once.
    pub max_connections: usize,
}

impl Default for QuicSection {
    fn default() -> Self {
        let quic = sallyport_quic::QuicConfig::default();
        QuicSection {
            enabled: true,
            certificate_hours: PortalConfig::default().cli_certificate_lifetime.as_secs() / 3600,
            idle_timeout_secs: quic.idle_timeout.as_secs(),
            max_connections: quic.max_connections,
        }
    }
}

impl QuicSection {
    /// The endpoint's settings from this section.
    pub fn quic_config(&self) -> sallyport_quic::QuicConfig {
        sallyport_quic::QuicConfig {
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
            ..sallyport_quic::QuicConfig::default()
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.certificate_hours == 0 || self.certificate_hours > 24 * 31 {
            bail!("quic.certificate_hours must be between 1 and 744 (a month)");
        }
        if self.idle_timeout_secs == 0 || self.idle_timeout_secs > 3600 {
            bail!("quic.idle_timeout_secs must be between 1 and 3600");
        }
        if self.max_connections == 0 {
            bail!("quic.max_connections must be positive");
        }
        Ok(())
    }
}

/// `[desktop]`: desktop (RDP) sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DesktopSection {
    /// Which way clipboard text may cross: `both`, `to-target`, `to-client` or `off`.
    pub clipboard: ClipboardDirection,
    /// Largest clipboard text either way, in bytes (at most 1 MiB).
    pub clipboard_max_bytes: usize,
}

/// `desktop.clipboard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClipboardDirection {
    /// Both ways.
    Both,
    /// From the user to the target only.
    ToTarget,
    /// From the target to the user only.
    ToClient,
    /// Never.
    Off,
}

impl Default for DesktopSection {
    fn default() -> Self {
        DesktopSection {
            clipboard: ClipboardDirection::Both,
            clipboard_max_bytes: ClipboardPolicy::default().max_bytes,
        }
    }
}

impl DesktopSection {
    /// The broker's desktop settings from this section.
    pub fn desktop_config(&self) -> sallyport_relay::DesktopConfig {
        use ClipboardDirection::{Both, Off, ToClient, ToTarget};
        sallyport_relay::DesktopConfig {
            clipboard: ClipboardPolicy {
                to_target: matches!(self.clipboard, Both | ToTarget),
                to_client: matches!(self.clipboard, Both | ToClient),
                max_bytes: if self.clipboard == Off {
                    0
                } else {
                    self.clipboard_max_bytes
                },
            },
            ..sallyport_relay::DesktopConfig::default()
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.clipboard != ClipboardDirection::Off
            && !(1..=MAX_CLIPBOARD_BYTES).contains(&self.clipboard_max_bytes)
        {
            bail!("desktop.clipboard_max_bytes must be between 1 and {MAX_CLIPBOARD_BYTES}");
        }
        Ok(())
    }
}

/// `[[networks]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkEntry {
    /// Display name.
    pub name: String,
    /// Address range.
    pub cidr: IpNet,
    /// Users may type an address inside this network instead of picking a named target.
    #[serde(default)]
    pub connect_by_ip: bool,
}

/// `[[targets]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetEntry {
    /// Display name, unique.
    pub name: String,
    /// IP literal or DNS name (checked against the networks at every connect).
    pub address: String,
    /// TCP port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Protocol (`ssh`).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Labels policies can select the target by.
    #[serde(default)]
    pub tags: Vec<String>,
}

fn default_ssh_port() -> u16 {
    22
}

fn default_protocol() -> String {
    "ssh".into()
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.sessions.max_sessions == 0 || self.sessions.max_sessions_per_user == 0 {
            bail!("sessions.max_sessions and sessions.max_sessions_per_user must be at least 1");
        }
        if self.portal.tls_cert.is_some() != self.portal.tls_key.is_some() {
            bail!("portal.tls_cert and portal.tls_key go together: set both or neither");
        }
        self.portal.validate()?;
        self.edge.validate()?;
        self.quic.validate()?;
        self.desktop.validate()?;
        sso::validate(&self.oidc, self.portal.public_url.is_some())?;
        let mut names = std::collections::HashSet::new();
        for target in &self.targets {
            if !names.insert(&target.name) {
                bail!("target {} is declared twice", target.name);
            }
            if sallyport_core::policy::Protocol::parse(&target.protocol).is_none() {
                bail!(
                    "target {}: unknown protocol {:?} (known: ssh, rdp)",
                    target.name,
                    target.protocol
                );
            }
            if target.port == 0 {
                bail!("target {}: port 0 is not a port", target.name);
            }
            sallyport_core::egress::parse_host(&target.address)
                .with_context(|| format!("target {}", target.name))?;
        }
        if self.recording.chunk_max_kib == 0 || self.recording.chunk_max_age_ms == 0 {
            bail!("recording.chunk_max_kib and recording.chunk_max_age_ms must be positive");
        }
        Ok(())
    }
}

mod sso;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
