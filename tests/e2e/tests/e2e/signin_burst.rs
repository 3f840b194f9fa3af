//! A burst of sign-ins at the real gateway: 100 logins, 20 at a time, over HTTPS. Every one
//! eventually succeeds (an attempt refused with 503 "too many sign-ins at once" is retried after its
//! `Retry-After`), the argon2id verifications that ran at once never exceeded the gateway's bound
//! (its `/admin/metrics` figures), and the gateway's resident memory after the burst stays within
//! 64 MiB of its idle figure. The figures are printed for the record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sallyport_e2e::hostile::rss_bytes;
use sallyport_e2e::portal::{ADMIN_PASSWORD, login_admin};
use sallyport_e2e::{Gateway, GatewayOptions};

const SIGN_INS: usize = 100;
const AT_A_TIME: usize = 20;
/// How far above idle the gateway's resident memory may be once the burst is over.
const RSS_ALLOWANCE: u64 = 64 * 1024 * 1024;
/// Refusals one sign-in may meet before the test gives up on it.
const MAX_REFUSALS: u32 = 20;

const MIB: f64 = 1024.0 * 1024.0;

/// One sign-in with the admin's password; retried after `Retry-After` while the gateway is busy.
/// Returns how many times it was refused.
async fn sign_in(gateway: &Gateway) -> Result<u32> {
    let mut refusals = 0;
    loop {
        let client = gateway.client()?.with_timeout(Duration::from_secs(60));
        let origin = client.origin();
        let response = client
            .post_form(
                "/login",
                &[("username", "admin"), ("password", ADMIN_PASSWORD)],
                Some(&origin),
            )
            .await?;
        match response.status {
            303 if response.location() != Some("/login") => return Ok(refusals),
            503 => {
                let page = response.text();
                if !page.contains("Too many sign-ins at once; try again in a moment.") {
                    bail!("a busy refusal without its words: {page}");
                }
                let wait: u64 = response
                    .header("retry-after")
                    .context("503 without Retry-After")?
                    .parse()
                    .context("Retry-After is not whole seconds")?;
                refusals += 1;
                if refusals > MAX_REFUSALS {
                    bail!("refused {refusals} times in a row");
                }
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            status => bail!(
                "sign-in answered {status} {:?}: {}",
                response.location(),
                response.text()
            ),
        }
    }
}

/// A figure of the gateway's `/admin/metrics`.
fn metric(text: &str, name: &str) -> Result<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .with_context(|| format!("no {name} in the metrics:\n{text}"))?
        .trim()
        .parse()
        .with_context(|| format!("{name} is not a whole number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sign_ins_is_bounded_and_gives_its_memory_back() -> Result<()> {
    let gateway = Arc::new(Gateway::start(GatewayOptions::default()).await?);
    let pid = gateway.pid().context("gateway pid")?;
    let idle_rss = rss_bytes(pid)?;
    let admin = login_admin(&gateway).await?;

    // The highest resident memory while the burst runs, sampled every 20 ms.
    let peak_rss = Arc::new(AtomicU64::new(idle_rss));
    let burst_over = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak_rss, burst_over) = (peak_rss.clone(), burst_over.clone());
        tokio::spawn(async move {
            while !burst_over.load(Ordering::Relaxed) {
                if let Ok(rss) = rss_bytes(pid) {
                    peak_rss.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let started = Instant::now();
    let mut refusals = 0;
    for _ in 0..SIGN_INS / AT_A_TIME {
        let batch: Vec<_> = (0..AT_A_TIME)
            .map(|_| {
                let gateway = gateway.clone();
                tokio::spawn(async move { sign_in(&gateway).await })
            })
            .collect();
        for sign_in in batch {
            refusals += tokio::time::timeout(Duration::from_secs(300), sign_in)
                .await
                .context("a sign-in did not finish in 300 s")???;
        }
    }
    let burst_time = started.elapsed();
    burst_over.store(true, Ordering::Relaxed);
    sampler.await?;

    // What the allocator gives back it gives back at once; a short pause lets the last answers go.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_rss = rss_bytes(pid)?;
    let metrics = admin.get("/admin/metrics").await?;
    if metrics.status != 200 {
        bail!("/admin/metrics answered {}", metrics.status);
    }
    let text = metrics.text();
    let limit = metric(&text, "sallyport_signin_verifications_limit")?;
    let peak = metric(&text, "sallyport_signin_verifications_peak")?;
    let refused = metric(&text, "sallyport_signin_refused_total")?;
    let peak_rss = peak_rss.load(Ordering::Relaxed);
    eprintln!(
        "signin burst: {SIGN_INS} sign-ins {AT_A_TIME} at a time in {:.1} s; \
         verifications at once: peak {peak} of limit {limit}; refused {refused} (retried {refusals}); \
         RSS idle {:.1} MiB, peak {:.1} MiB, after {:.1} MiB (+{:.1} MiB)",
        burst_time.as_secs_f64(),
        idle_rss as f64 / MIB,
        peak_rss as f64 / MIB,
        after_rss as f64 / MIB,
        after_rss.saturating_sub(idle_rss) as f64 / MIB,
    );
    assert!(limit >= 1, "the bound is {limit}");
    assert!(
        (1..=limit).contains(&peak),
        "{peak} verifications ran at once; the bound is {limit}"
    );
    assert_eq!(refused, u64::from(refusals), "every refusal was seen");
    assert!(
        after_rss <= idle_rss + RSS_ALLOWANCE,
        "the gateway kept {:.1} MiB after the burst (idle {:.1} MiB, after {:.1} MiB)",
        after_rss.saturating_sub(idle_rss) as f64 / MIB,
        idle_rss as f64 / MIB,
        after_rss as f64 / MIB,
    );
    Ok(())
}
