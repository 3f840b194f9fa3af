//! The Sallyport gateway daemon: reads the configuration, opens the state and recordings databases,
//! seals what a crash left unfinished, and serves the portal until SIGINT or SIGTERM.
//!
//! This binary only wires the crates together (edge, state, recorder, SSH connector, broker, portal); the
//! logic lives in them. It prints the one-time admin password on first start, once, and nothing secret
//! after that.

mod config;
mod console;
mod edge;
mod keys;
mod logging;
mod malloc_tunables;
mod recordings;
mod tls;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sallyport_core::policy::{Protocol, Role};
use sallyport_portal::Portal;
use sallyport_recordings::Limits;
use sallyport_relay::{Broker, now_ms};
use sallyport_state::{NetworkRecord, StateDb, TargetSpec};
use tracing::{info, warn};

use crate::config::Config;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "sallyport-gateway",
    version,
    about = "The Sallyport bastion gateway"
)]
struct Cli {
    /// Configuration file (TOML). Without it, the embedded defaults apply.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Overrides `state_dir` from the configuration.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Overrides `portal.listen` from the configuration.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Checks the configuration and exits.
    #[arg(long)]
    check_config: bool,
    /// Runs the appliance console on this terminal instead of the gateway: a login for auditors and
    /// admins (portal accounts) that opens `sallyport-review` on the recordings.
    #[arg(long, conflicts_with = "check_config")]
    console: bool,
}

fn main() -> std::process::ExitCode {
    malloc_tunables::fix_mmap_threshold();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sallyport-gateway: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = cli.state_dir {
        config.state_dir = dir;
    }
    if let Some(listen) = cli.listen {
        config.portal.listen = listen;
    }
    if cli.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    if cli.console {
        return console::run(&config);
    }
    logging::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    let state =
        StateDb::open(&config.state_dir.join("state.db")).context("opening the state database")?;
    sync_configuration(&state, &config)?;
    bootstrap_admin(&state)?;

    let signing_key = keys::load_or_create_signing_key(&config.state_dir)?;
    let recordings_path = config.state_dir.join("recordings.db");
    recordings::recover(&state, &recordings_path, &signing_key)?;
    let limits = Limits {
        chunk_max_bytes: config.recording.chunk_max_kib * 1024,
        chunk_max_age: Duration::from_millis(config.recording.chunk_max_age_ms),
        ..Limits::default()
    };
    let recording_public_key = signing_key.verifying_key().to_bytes();
    let recorder = recordings::start_recorder(&recordings_path, signing_key, limits)?;

    // The edge goes on before the portal listens, so the portal is never reachable unfiltered.
    let edge = edge::EdgeHandle::start(&config.edge, config.portal.listen.port())?;
    edge.spawn_maintenance();

    let tls = tls::load_or_create(&config.portal, &config.state_dir)?;
    let listener = tokio::net::TcpListener::bind(config.portal.listen)
        .await
        .with_context(|| format!("listening on {}", config.portal.listen))?;
    let local = listener.local_addr()?;

    // Only the QUIC endpoint carries `sallyport proxy` streams; without it the proxy's SSH server
    // gets a throwaway host key that nothing can reach, and no key is written to the state directory.
    let proxy = if config.quic.enabled {
        let proxy = tls::load_or_create_proxy_host_key(&config.state_dir)?;
        println!("ssh proxy host key: {}", proxy.host_key_fingerprint());
        proxy
    } else {
        tls::ephemeral_proxy_host_key()?
    };
    let connectors = sallyport_relay::Connectors {
        terminal: Arc::new(sallyport_ssh::SshConnector::default()),
        desktop: Arc::new(sallyport_rdp::RdpConnector {
            keyframe_interval: std::time::Duration::from_millis(
                config.recording.desktop_keyframe_interval_ms.max(100),
            ),
        }),
        proxy: Arc::new(proxy),
    };
    let broker = Broker::new(
        state.clone(),
        recorder.clone(),
        own_addresses(local.ip()),
        connectors,
        config.sessions.broker_config(),
    )
    .with_desktop_config(config.desktop.desktop_config())
    .with_archive(sallyport_relay::archive::Archive::new(
        recordings_path.clone(),
        recording_public_key,
    ))
    .with_dashboard(sallyport_relay::dashboard::DashboardSources {
        state_dir: config.state_dir.clone(),
        recordings_db: recordings_path.clone(),
        edge: Some(edge.clone() as Arc<dyn sallyport_relay::dashboard::EdgeSource>),
    });
    let broker = Arc::new(broker);
    // The QUIC endpoint shares the portal's address and port (UDP) and its certificate.
    let quic = if config.quic.enabled {
        let user_ca = Arc::new(tls::load_or_create_user_ca(&config.state_dir)?);
        let server = sallyport_quic::QuicServer::bind(
            local,
            tls.cert_chain.clone(),
            tls.key.clone_key(),
            user_ca.cert_der(),
            broker.clone(),
            config.quic.quic_config(),
        )
        .context("starting the QUIC endpoint")?;
        info!(listen = %server.local_addr()?, "quic endpoint listening (udp)");
        Some((server, user_ca))
    } else {
        info!("quic endpoint disabled by configuration");
        None
    };
    let mut portal_config = config.portal.portal_config();
    portal_config.cli_certificate_lifetime =
        Duration::from_secs(config.quic.certificate_hours * 3600);
    portal_config.identity_providers = config.identity_providers()?;
    let public_url = portal_config.public_url.clone();
    let portal = Portal::with_edge(
        broker,
        portal_config,
        Some(edge.clone() as Arc<dyn sallyport_portal::EdgeControl>),
        quic.as_ref().map(|(_, ca)| ca.clone()),
    );

    info!(listen = %local, fingerprint = %tls.fingerprint, generated = tls.generated, "portal listening");
    // The address users open: the configured public_url (providers and passkeys are bound to it), else
    // the listener's own.
    match &public_url {
        Some(url) => println!("url: {url}"),
        None => {
            let url_host = if local.ip().is_unspecified() {
                "localhost".to_owned()
            } else {
                url_host(local.ip())
            };
            println!("url: https://{url_host}:{}/", local.port());
        }
    }
    println!("fingerprint: {}", tls.fingerprint);
    use std::io::Write;
    let _ = std::io::stdout().flush();

    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let quic_task = quic.map(|(server, _)| tokio::spawn(server.serve(stopped(stop_rx.clone()))));
    sallyport_portal::serve(listener, tls.server_config, portal, stopped(stop_rx)).await;
    if let Some(task) = quic_task {
        let _ = task.await;
    }
    // Give sessions a moment to seal their recordings, then flush the recorder.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::spawn_blocking(move || recorder.shutdown())
        .await
        .ok();
    // Detaches the edge (its links close with the last reference).
    drop(edge);
    info!("stopped");
    Ok(())
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received, stopping"),
        _ = term.recv() => info!("SIGTERM received, stopping"),
    }
}

/// Writes the configuration's networks and targets into the state database.
fn sync_configuration(state: &StateDb, config: &Config) -> anyhow::Result<()> {
    let networks: Vec<NetworkRecord> = config
        .networks
        .iter()
        .map(|n| NetworkRecord {
            name: n.name.clone(),
            cidr: n.cidr,
            connect_by_ip: n.connect_by_ip,
        })
        .collect();
    state.sync_config_networks(&networks)?;
    let targets: Vec<TargetSpec> = config
        .targets
        .iter()
        .map(|t| TargetSpec {
            name: t.name.clone(),
            host: t.address.clone(),
            port: t.port,
            // Validated when the configuration was read.
            protocol: Protocol::parse(&t.protocol).unwrap_or(Protocol::Ssh),
            tags: t.tags.clone(),
        })
        .collect();
    state.sync_config_targets(&targets)?;
    if config.networks.is_empty() {
        warn!("no networks are configured: no target can be reached until [[networks]] are added");
    }
    Ok(())
}

/// With no users at all, creates `admin` with a random one-time password and shows it once.
fn bootstrap_admin(state: &StateDb) -> anyhow::Result<()> {
    if state.user_count()? > 0 {
        return Ok(());
    }
    let password = sallyport_state::random_password()?;
    state.create_user("admin", &password, Role::Admin, true, now_ms())?;
    info!(target: "audit", kind = "user_created", actor = "admin", "first start: created the admin user with a one-time password");
    println!(
        "first start: created user admin with a one-time password (it must be changed at first login)"
    );
    println!("user: admin");
    println!("password: {password}");
    Ok(())
}

/// The gateway's own addresses, never dialled as targets.
fn own_addresses(listen: IpAddr) -> Vec<IpAddr> {
    let mut own = vec![listen];
    match sallyport_edge::local_addresses() {
        Ok(addresses) => own.extend(addresses.into_iter().map(|(_, address)| address)),
        Err(error) => warn!(%error, "could not list this machine's addresses"),
    }
    own
}
