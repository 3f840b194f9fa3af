//! Turning a target's configured host into one vetted address to dial.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sallyport_core::egress::{Denied, EgressPolicy, Host, HostParseError, parse_host};

/// Why a target's address cannot be dialled.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The configured host is not a valid address or name.
    #[error(transparent)]
    Parse(#[from] HostParseError),
    /// The name did not resolve.
    #[error("the name {0} did not resolve")]
    NotFound(String),
    /// The resolver did not answer in time.
    #[error("resolving {0} timed out")]
    Timeout(String),
    /// The egress rules refuse an address.
    #[error("{addr} is refused because {reason}")]
    Denied {
        /// The refused address.
        addr: IpAddr,
        /// Why.
        reason: Denied,
    },
}

/// Resolves `host` (if it is a name) and vets every address with `policy`. If any address a name
/// resolves to is refused, the whole name is refused: a name that points at both a target and the
/// metadata service is an attack, not a choice. Returns the address to dial.
pub async fn resolve_target(
    policy: &EgressPolicy,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<SocketAddr, ResolveError> {
    let candidates: Vec<IpAddr> = match parse_host(host)? {
        Host::Ip(ip) => vec![ip],
        Host::Name(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), port));
            let found = tokio::time::timeout(timeout, lookup)
                .await
                .map_err(|_| ResolveError::Timeout(name.clone()))?
                .map_err(|_| ResolveError::NotFound(name.clone()))?;
            let mut ips: Vec<IpAddr> = found.map(|sa| sa.ip()).collect();
            ips.dedup();
            if ips.is_empty() {
                return Err(ResolveError::NotFound(name));
            }
            ips
        }
    };
    let mut vetted = Vec::with_capacity(candidates.len());
    for ip in candidates {
        vetted.push(
            policy
                .check(ip)
                .map_err(|reason| ResolveError::Denied { addr: ip, reason })?,
        );
    }
    // Prefer IPv4 when a name has both, as OpenSSH's default AddressFamily any would try first.
    let chosen = vetted
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(vetted.first())
        .copied();
    chosen
        .map(|ip| SocketAddr::new(ip, port))
        .ok_or_else(|| ResolveError::NotFound(host.to_owned()))
}
