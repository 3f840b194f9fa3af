//! The portal's TLS material: from configuration, or a self-signed certificate made on first start and
//! kept in the state directory, so its fingerprint stays the same across restarts; and the user CA's
//! key, which signs the CLI's client certificates.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::PortalSection;

/// The server configuration and the certificate's SHA-256 fingerprint.
pub struct PortalTls {
    /// For the acceptor.
    pub server_config: Arc<rustls::ServerConfig>,
    /// `AB:CD:...` over the end-entity certificate's DER, as browsers show it.
    pub fingerprint: String,
    /// Whether this start generated the certificate.
    pub generated: bool,
    /// The certificate chain, for the QUIC endpoint's own TLS configuration.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The private key, likewise.
    pub key: PrivateKeyDer<'static>,
}

/// Loads or creates the certificate and builds the rustls configuration.
pub fn load_or_create(section: &PortalSection, state_dir: &Path) -> anyhow::Result<PortalTls> {
    let (cert_path, key_path, generated) = match (&section.tls_cert, &section.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), false),
        _ => {
            let cert = state_dir.join("tls-cert.pem");
            let key = state_dir.join("tls-key.pem");
            let generated = !cert.exists() || !key.exists();
            if generated {
                generate(&section.hostnames, &cert, &key)?;
            }
            (cert, key, generated)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    let first = certs
        .first()
        .ok_or_else(|| anyhow!("{} holds no certificate", cert_path.display()))?;
    let fingerprint = sallyport_tls_pin::fingerprint(first);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if section.allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key.clone_key())
        .context("the TLS certificate and key do not fit together")?;
    // HTTP/1.1 only: browsers then open WebSockets with a plain upgrade.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(PortalTls {
        server_config: Arc::new(config),
        fingerprint,
        generated,
        cert_chain: certs,
        key,
    })
}

/// Loads the user CA's key from the state directory, or makes one on first start (0600).
pub fn load_or_create_user_ca(state_dir: &Path) -> anyhow::Result<sallyport_portal::UserCa> {
    let path = state_dir.join("user-ca-key.pem");
    if path.exists() {
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return sallyport_portal::UserCa::from_key_pem(&pem)
            .with_context(|| format!("loading the user CA from {}", path.display()));
    }
    let (ca, pem) = sallyport_portal::UserCa::generate().context("making the user CA")?;
    write_private(&path, pem.as_bytes())?;
    Ok(ca)
}

fn generate(hostnames: &[String], cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let certified = rcgen::generate_simple_self_signed(hostnames.to_vec())
        .context("generating a self-signed certificate")?;
    write_private(key_path, certified.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, certified.cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    Ok(())
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// An SSH proxy host key that lives in memory only (for a gateway whose QUIC endpoint is off, so no
/// `sallyport proxy` stream can reach it).
pub fn ephemeral_proxy_host_key() -> anyhow::Result<sallyport_ssh::SshProxy> {
    Ok(sallyport_ssh::SshProxy::from_openssh(
        &new_proxy_host_key()?
    )?)
}

/// A new Ed25519 SSH proxy host key (OpenSSH PEM).
fn new_proxy_host_key() -> anyhow::Result<String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness: {e}"))?;
    Ok(sallyport_ssh::SshProxy::generate_host_key(seed)?)
}

/// Loads the SSH host key `sallyport proxy` sessions present to users' ssh, or makes one on first start
/// (Ed25519, 0600), so users' `known_hosts` entries stay valid across restarts. The public half is written
/// beside it (`ssh-proxy-host-key.pub`, an OpenSSH line) for admins to hand out.
pub fn load_or_create_proxy_host_key(state_dir: &Path) -> anyhow::Result<sallyport_ssh::SshProxy> {
    let path = state_dir.join("ssh-proxy-host-key");
    if !path.exists() {
        let pem = new_proxy_host_key()?;
        write_private(&path, pem.as_bytes())?;
    }
    let pem =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let proxy = sallyport_ssh::SshProxy::from_openssh(&pem)
        .with_context(|| format!("loading the ssh proxy host key from {}", path.display()))?;
    let public = state_dir.join("ssh-proxy-host-key.pub");
    std::fs::write(&public, format!("{}\n", proxy.host_key_openssh()))
        .with_context(|| format!("writing {}", public.display()))?;
    Ok(proxy)
}
