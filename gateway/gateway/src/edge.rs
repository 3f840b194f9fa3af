//! Starts the XDP edge from `[edge]`, keeps it current (own addresses, expired blocklist entries),
//! samples its counters once a minute into the last hour's drop history, and exposes it to the portal
//! as an [`EdgeControl`] and to the dashboard as an [`EdgeSource`].
//!
//! Without configured interfaces the gateway runs without the edge and says so; with `edge.required`
//! (the appliance) a failure to attach is fatal, so the appliance never serves without its edge.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use sallyport_edge::{DropHistory, Edge, EdgeSettings, Role};
use sallyport_portal::{EdgeControl, EdgeCounter, EdgeInterface, EdgeStatus};
use sallyport_relay::dashboard::{EdgeSource, EdgeSummary};
use tracing::{info, warn};

use crate::config::{EdgeRole, EdgeSection};

/// How often own addresses are re-read (DHCP renewals) and expired blocklist entries swept.
const MAINTENANCE_PERIOD: Duration = Duration::from_secs(5);
/// Maintenance rounds between two samples of the counters for the drop history (one a minute).
const ROUNDS_PER_SAMPLE: u32 = 12;

/// The current minute, as the drop history counts them.
fn current_minute() -> u64 {
    sallyport_relay::now_ms() / 60_000
}

/// The edge as the portal sees it: attached, or the reason it is not.
pub struct EdgeHandle {
    edge: Option<Mutex<Edge>>,
    not_attached: Option<String>,
    block_locked_out_sources: bool,
    /// Drops per reason over the last hour, sampled by the maintenance task.
    history: Mutex<DropHistory>,
}

impl EdgeHandle {
    /// Loads and attaches the edge as `[edge]` says; an error only when the edge is required.
    pub fn start(section: &EdgeSection, portal_port: u16) -> anyhow::Result<Arc<EdgeHandle>> {
        let detached = |reason: String| {
            Arc::new(EdgeHandle {
                edge: None,
                not_attached: Some(reason),
                block_locked_out_sources: false,
                history: Mutex::default(),
            })
        };
        if section.interfaces.is_empty() {
            warn!(
                "edge not attached: no [[edge.interfaces]] configured; every port this machine listens on is as open as its own firewall leaves it"
            );
            return Ok(detached("no [[edge.interfaces]] are configured".into()));
        }
        match attach(section, portal_port) {
            Ok(edge) => Ok(Arc::new(EdgeHandle {
                edge: Some(Mutex::new(edge)),
                not_attached: None,
                block_locked_out_sources: section.block_locked_out_sources,
                history: Mutex::default(),
            })),
            Err(error) if section.required => Err(error.context(
                "the edge is required (edge.required) and could not be attached; refusing to start",
            )),
            Err(error) => {
                warn!(
                    error = format!("{error:#}"),
                    "edge not attached; running without it"
                );
                Ok(detached(format!("{error:#}")))
            }
        }
    }

    /// Re-reads own addresses and sweeps the blocklist every few seconds, until the task is dropped.
    pub fn spawn_maintenance(self: &Arc<Self>) {
        if self.edge.is_none() {
            return;
        }
        // A weak reference, so that dropping the last handle detaches the edge at shutdown.
        let handle = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MAINTENANCE_PERIOD);
            // The first round samples at once: the starting point the first minute's drops count from.
            for round in 0u32.. {
                tick.tick().await;
                let Some(handle) = handle.upgrade() else {
                    return;
                };
                let Some(edge) = &handle.edge else {
                    return;
                };
                let mut edge = edge.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Err(error) = edge.sync_own_addresses() {
                    warn!(%error, "edge: re-reading own addresses failed");
                }
                if let Err(error) = edge.sweep_expired() {
                    warn!(%error, "edge: sweeping the blocklist failed");
                }
                if round % ROUNDS_PER_SAMPLE == 0 {
                    match edge.counters() {
                        Ok(counters) => handle
                            .history
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .sample(current_minute(), &counters),
                        Err(error) => {
                            warn!(%error, "edge: reading counters for the history failed")
                        }
                    }
                }
            }
        });
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Edge>> {
        self.edge
            .as_ref()
            .map(|edge| edge.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

fn attach(section: &EdgeSection, portal_port: u16) -> anyhow::Result<Edge> {
    let settings = EdgeSettings {
        portal_port,
        new_flows_per_second: section.new_flows_per_second,
        new_flow_burst: section.new_flow_burst,
        tcp_flow_timeout: Duration::from_secs(section.tcp_flow_timeout_secs),
        udp_flow_timeout: Duration::from_secs(section.udp_flow_timeout_secs),
    };
    let mut edge = Edge::load(&settings).context("loading the edge")?;
    for interface in &section.interfaces {
        let role = match interface.role {
            EdgeRole::Public => Role::Public,
            EdgeRole::Internal => Role::Internal,
        };
        let attachment = edge
            .attach(&interface.name, role)
            .with_context(|| format!("attaching the edge to {}", interface.name))?;
        info!(
            interface = %attachment.interface,
            role = role.label(),
            mode = attachment.mode.label(),
            portal_port,
            "edge attached: only the portal port and replies of the gateway's own connections pass"
        );
    }
    if edge.attachments().is_empty() {
        bail!("the edge attached to no interface");
    }
    Ok(edge)
}

impl EdgeControl for EdgeHandle {
    fn block_source(&self, source: IpNet, duration: Duration) {
        if !self.block_locked_out_sources {
            return;
        }
        let Some(mut edge) = self.lock() else {
            return;
        };
        match edge.block(source, duration) {
            Ok(()) => {
                info!(target: "audit", kind = "edge_block", source = %source, seconds = duration.as_secs(), "edge drops the locked-out source until its wait ends")
            }
            Err(error) => warn!(%error, %source, "edge: blocking a locked-out source failed"),
        }
    }

    fn status(&self) -> EdgeStatus {
        let Some(edge) = self.lock() else {
            return EdgeStatus {
                not_attached: self.not_attached.clone(),
                ..EdgeStatus::default()
            };
        };
        let interfaces = edge
            .attachments()
            .iter()
            .map(|a| EdgeInterface {
                name: a.interface.clone(),
                role: a.role.label().into(),
                mode: a.mode.label().into(),
            })
            .collect();
        let counters = match edge.counters() {
            Ok(counters) => counters
                .by_reason
                .iter()
                .map(|(reason, packets)| EdgeCounter {
                    reason: reason.label().into(),
                    passes: reason.passes(),
                    packets: *packets,
                })
                .collect(),
            Err(error) => {
                warn!(%error, "edge: reading counters failed");
                Vec::new()
            }
        };
        let blocked = edge
            .blocked()
            .map(|entries| {
                entries
                    .into_iter()
                    .map(|b| (b.network, b.remaining))
                    .collect()
            })
            .unwrap_or_default();
        EdgeStatus {
            not_attached: None,
            interfaces,
            counters,
            blocked,
            tracked_flows: edge.flow_count().unwrap_or(0),
        }
    }
}

impl EdgeSource for EdgeHandle {
    fn summary(&self) -> EdgeSummary {
        if self.edge.is_none() {
            return EdgeSummary {
                not_attached: Some(
                    self.not_attached
                        .clone()
                        .unwrap_or_else(|| "the edge is not loaded".into()),
                ),
                ..EdgeSummary::default()
            };
        }
        let minute = current_minute();
        let history = self
            .history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        EdgeSummary {
            not_attached: None,
            drops_last_hour: history
                .last_hour(minute)
                .into_iter()
                .map(|(reason, packets)| (reason.label().to_owned(), packets))
                .collect(),
            minutes_sampled: history.minutes(minute).len(),
        }
    }
}
