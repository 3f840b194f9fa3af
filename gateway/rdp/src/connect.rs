//! Connecting to an RDP target: X.224 negotiation (TLS or CredSSP, never standard RDP security), TLS with
//! the target's key pinned, CredSSP/NLA when the target asks for it, then the RDP connection sequence.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ironrdp_cliprdr::CliprdrClient;
use ironrdp_connector::sspi::generator::NetworkRequest;
use ironrdp_connector::{
    ClientConnector, ConnectionOutcome, ConnectorError, ConnectorErrorKind, ConnectorResult,
    Credentials, DesktopSize as RdpDesktopSize, ServerName,
};
use ironrdp_displaycontrol::client::DisplayControlClient;
use ironrdp_dvc::DrdynvcClient;
use ironrdp_pdu::gcc::{ConnectionType, KeyboardType};
use ironrdp_pdu::nego::FailureCode;
use ironrdp_pdu::rdp::capability_sets::{MajorPlatformType, RailSupportLevel};
use ironrdp_pdu::rdp::client_info::{PerformanceFlags, TimezoneInfo};
use ironrdp_tokio::{NetworkClient, TokioFramed};
use sallyport_core::display::{ClipboardPolicy, DesktopSize};
use tokio::net::TcpStream;

use crate::clipboard::{Backend, Queue};
use crate::error::RdpError;
use crate::session::{Observer, RdpSession};
use crate::tls::{self, TargetKey};

/// What it takes to open a desktop. The address is already vetted by the egress rules.
pub struct ConnectRequest {
    /// The vetted address to dial.
    pub addr: SocketAddr,
    /// Account on the target.
    pub username: String,
    /// Its password, for this connection only.
    pub password: String,
    /// Windows domain, if any.
    pub domain: Option<String>,
    /// The pinned key (`rdp-spki ...`), or `None` to trust on first use.
    pub pinned_key: Option<String>,
    /// Initial desktop size.
    pub size: DesktopSize,
    /// Deadline for connect, TLS, NLA and the connection sequence together.
    pub timeout: Duration,
    /// Sees every server PDU before it is decoded (the recorder); `None` records nothing.
    pub observer: Option<Arc<dyn Observer>>,
    /// How often the session sends a keyframe of its framebuffer to the observer.
    pub keyframe_interval: Duration,
    /// Which way clipboard text may cross; [`ClipboardPolicy::OFF`] opens no clipboard channel.
    pub clipboard: ClipboardPolicy,
}

impl std::fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectRequest")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// An open desktop and the key the target proved.
pub struct Connected {
    /// The running session.
    pub session: RdpSession,
    /// The target's TLS key (to pin on first use).
    pub key: TargetKey,
}

/// CredSSP with NTLM needs no network besides the target; Kerberos (which would) is not offered.
struct NoNetwork;

impl NetworkClient for NoNetwork {
    async fn send(&mut self, _request: &NetworkRequest) -> ConnectorResult<Vec<u8>> {
        Err(ironrdp_connector::general_err!(
            "the gateway does not reach a KDC"
        ))
    }
}

/// The connector configuration: TLS and CredSSP allowed, standard security refused, lossless bitmaps
/// (no codec negotiated means RDP6 planar and interleaved, which decode without state, so a keyframe plus
/// later PDUs replays exactly), no bulk compression, no audio, no server pointer (the browser draws its own).
fn config(request: &ConnectRequest) -> ironrdp_connector::Config {
    ironrdp_connector::Config {
        desktop_size: RdpDesktopSize {
            width: request.size.width,
            height: request.size.height,
        },
        monitor_layout: None,
        desktop_scale_factor: 0,
        desktop_physical_size: None,
        desktop_orientation: None,
        device_scale_factor: None,
        monitor_extended_layout: None,
        relative_mouse_input: false,
        enable_tls: true,
        enable_credssp: true,
        enable_standard_rdp_security: false,
        credentials: Credentials::UsernamePassword {
            username: request.username.clone(),
            password: request.password.clone(),
        },
        domain: request.domain.clone(),
        // Servers treat builds up to 419 as clients that cannot resize (xrdp does).
        client_build: 2600,
        client_name: "sallyport".into(),
        keyboard_type: KeyboardType::IBM_ENHANCED,
        keyboard_subtype: 0,
        keyboard_functional_keys_count: 12,
        keyboard_layout: 0,
        connection_type: ConnectionType::Lan,
        ime_file_name: String::new(),
        bitmap: None,
        dig_product_id: String::new(),
        client_dir: String::new(),
        alternate_shell: String::new(),
        work_dir: String::new(),
        remote_application_mode: false,
        rail_support_level: RailSupportLevel::empty(),
        platform: MajorPlatformType::UNIX,
        hardware_id: None,
        request_data: None,
        autologon: true,
        enable_audio_playback: false,
        enable_audio_capture: false,
        performance_flags: PerformanceFlags::default(),
        license_cache: None,
        timezone_info: TimezoneInfo::default(),
        compression_type: None,
        enable_server_pointer: false,
        pointer_software_rendering: false,
        multitransport_flags: None,
        support_dyn_vc_gfx_protocol: false,
    }
}

/// Classifies a connector failure.
pub(crate) fn connector_error(error: &ConnectorError) -> RdpError {
    let detail = error.report().to_string();
    match error.kind() {
        ConnectorErrorKind::Negotiation(failure)
            if failure.code() == FailureCode::SSL_NOT_ALLOWED_BY_SERVER =>
        {
            RdpError::StandardSecurity
        }
        ConnectorErrorKind::Credssp(_) | ConnectorErrorKind::AccessDenied => {
            RdpError::AuthFailed(detail)
        }
        _ if detail.contains("CredSSP") || detail.contains("credssp") => {
            // A wrong NLA password makes some servers (FreeRDP's) just close the socket mid-CredSSP.
            RdpError::AuthFailed(detail)
        }
        _ if detail.contains("unexpected end of file") || detail.contains("UnexpectedEof") => {
            RdpError::Closed(format!(": {detail}"))
        }
        _ => RdpError::Protocol(detail),
    }
}

/// Classifies a failure of the connection sequence after TLS. A server that refuses NLA credentials may
/// just close the socket in the middle of CredSSP (FreeRDP's does), which ironrdp reports as a short read
/// in its CredSSP loop: that is a refused login, not a protocol error.
fn finalize_error(error: &ConnectorError, nla: bool) -> RdpError {
    let report = error.report().to_string();
    match connector_error(error) {
        RdpError::Protocol(_) | RdpError::Closed(_)
            if nla && report.contains("read frame by hint") && report.contains("connector.rs") =>
        {
            RdpError::AuthFailed(
                "the target closed the connection during NLA, which is how it refuses a wrong \
                 username or password"
                    .into(),
            )
        }
        other => other,
    }
}

/// Dials the target and runs the whole connection sequence, within `request.timeout`.
pub async fn connect(request: ConnectRequest) -> Result<Connected, RdpError> {
    let timeout = request.timeout;
    tokio::time::timeout(timeout, connect_inner(request))
        .await
        .map_err(|_| RdpError::Timeout("connect, TLS, login and connection sequence"))?
}

async fn connect_inner(request: ConnectRequest) -> Result<Connected, RdpError> {
    let tcp = TcpStream::connect(request.addr)
        .await
        .map_err(|e| RdpError::Unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let local = tcp
        .local_addr()
        .map_err(|e| RdpError::Unreachable(e.to_string()))?;
    let mut framed = TokioFramed::new(tcp);
    let drdynvc =
        DrdynvcClient::new().with_dynamic_channel(DisplayControlClient::new(|_| Ok(Vec::new())));
    let mut connector = ClientConnector::new(config(&request), local).with_static_channel(drdynvc);
    let clipboard = request.clipboard.enabled().then(|| {
        let queue = Queue::default();
        connector.attach_static_channel(CliprdrClient::new(Box::new(Backend::new(
            queue.clone(),
            request.clipboard,
        ))));
        (queue, request.clipboard)
    });
    let should_upgrade = ironrdp_tokio::connect_begin(&mut framed, &mut connector)
        .await
        .map_err(|e| connector_error(&e))?;
    let (tcp, leftover) = framed.into_inner();
    let (tls, key) = tls::upgrade(tcp, request.pinned_key.as_deref()).await?;
    let upgraded = ironrdp_tokio::mark_as_upgraded(should_upgrade, &mut connector);
    let mut framed = TokioFramed::new_with_leftover(tls, leftover);
    let nla = connector.should_perform_credssp();
    let outcome = ironrdp_tokio::connect_finalize(
        upgraded,
        connector,
        &mut framed,
        &mut NoNetwork,
        ServerName::new(request.addr.ip().to_string()),
        key.public_key().to_vec(),
        None,
    )
    .await
    .map_err(|e| finalize_error(&e, nla))?;
    let result = match outcome {
        ConnectionOutcome::Connected(result) => result,
        ConnectionOutcome::Redirected(_) => {
            return Err(RdpError::Protocol(
                "the target redirected the connection elsewhere, which the gateway does not follow"
                    .into(),
            ));
        }
    };
    let session = RdpSession::start(
        framed,
        result,
        request.observer,
        request.keyframe_interval,
        clipboard,
    )?;
    Ok(Connected { session, key })
}
