//! Connect by IP: off by default; an admin turns it on per network; a user whose policy grants
//! `network:NAME` may then type an address there and get a recorded session, while forbidden addresses,
//! names, and users without such a policy are refused before any target row is made.

use std::time::Duration;

use anyhow::Result;
use sallyport_e2e::portal::{Terminal, add_policy, create_user, first_login, login_admin};
use sallyport_e2e::{
    Client, Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};

async fn submit(client: &Client, address: &str) -> Result<(u16, String, String)> {
    let origin = client.origin();
    let response = client
        .post_form(
            "/connect-ip",
            &[("address", address), ("port", "22")],
            Some(&origin),
        )
        .await?;
    Ok((
        response.status,
        response.location().unwrap_or_default().to_owned(),
        response.text(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_addresses_follow_the_network_switch_egress_rules_and_policy() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("byip")?;
    let account = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    // No named target: everything goes by typed address.
    let gateway = Gateway::start(GatewayOptions::default().network("e2e", &net.cidr())).await?;
    let admin = login_admin(&gateway).await?;
    let once = create_user(&admin, "gina", "user", "").await?;
    add_policy(&admin, "gina-net", "user:gina", "network:e2e").await?;
    let gina = first_login(&gateway, "gina", &once, "gina-password-1").await?;
    let target = net.ns_addr().to_string();

    // Off by default.
    assert!(
        gina.get("/connect-ip")
            .await?
            .text()
            .contains("No network allows")
    );
    let (status, _, page) = submit(&gina, &target).await?;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("not turned on"), "{page}");

    // An admin turns it on.
    let response = admin
        .post_form(
            "/admin/networks/connect-by-ip",
            &[("cidr", &net.cidr()), ("on", "true")],
            Some(&admin.origin()),
        )
        .await?;
    assert_eq!(response.status, 303, "{}", response.text());
    assert!(
        admin
            .get("/admin/networks")
            .await?
            .text()
            .contains(r#"<td class="by-ip">on</td>"#)
    );

    // Refusals: the gateway's own address, loopback, a name, an address outside every network.
    for (address, expected, words) in [
        (net.host_addr().to_string(), 403, "own addresses"),
        ("127.0.0.1".to_owned(), 403, "loopback"),
        ("0x7f.1".to_owned(), 403, "loopback"),
        ("localhost".to_owned(), 400, "type an IP address"),
        (
            "192.0.2.9".to_owned(),
            403,
            "outside the configured networks",
        ),
    ] {
        let (status, _, page) = submit(&gina, &address).await?;
        assert_eq!(status, expected, "{address}: {page}");
        assert!(page.contains(words), "{address}: {page}");
    }
    // A user without a network policy is refused too.
    let once = create_user(&admin, "hank", "user", "").await?;
    let hank = first_login(&gateway, "hank", &once, "hank-password-1").await?;
    let (status, _, page) = submit(&hank, &target).await?;
    assert_eq!(status, 403);
    assert!(page.contains("no policy"), "{page}");
    assert!(
        !admin
            .get("/admin/targets")
            .await?
            .text()
            .contains(&format!("{target}:22")),
        "a refused address left a target row"
    );

    // Allowed: a target row ADDRESS:PORT, then a normal recorded session.
    let (status, location, page) = submit(&gina, &target).await?;
    assert_eq!(status, 303, "{page}");
    let id: i64 = location.trim_start_matches("/connect/").parse()?;
    assert_eq!(gina.get(&location).await?.status, 200);
    let mut terminal = Terminal::open(&gina, id, &account.name, &account.password).await?;
    terminal.expect_connected().await?;
    terminal.type_text("echo by-ip-$((2*21))\r").await?;
    assert!(
        terminal
            .read_until(Duration::from_secs(10), |r| r.output.contains("by-ip-42"))
            .await?
    );
    terminal.close().await;
    // The same address again reuses the row (and its pinned host key).
    let (_, again, _) = submit(&gina, &target).await?;
    assert_eq!(again, location);
    assert!(
        gina.get("/targets")
            .await?
            .text()
            .contains(&format!(r#"data-target="{target}:22""#))
    );
    assert!(
        !hank
            .get("/targets")
            .await?
            .text()
            .contains(&format!("{target}:22"))
    );
    let audit = admin.get("/admin/audit").await?.text();
    assert!(
        audit.contains(r#"data-kind="connect_by_ip""#)
            && audit.contains(r#"data-kind="network_connect_by_ip""#)
    );

    // The export of a filter holds what the page showed for it, and is itself audited.
    let shown = admin
        .get("/admin/audit?kind=connect_by_ip")
        .await?
        .text()
        .matches(r#"data-kind="#)
        .count();
    let export = admin
        .get("/admin/audit/export?format=jsonl&kind=connect_by_ip")
        .await?;
    assert_eq!(export.status, 200, "{}", export.text());
    assert_eq!(
        export.header("content-disposition"),
        Some(r#"attachment; filename="sallyport-audit.jsonl""#)
    );
    let exported: Vec<serde_json::Value> = export
        .text()
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(
        !exported.is_empty() && exported.len() == shown,
        "exported {exported:?}, the page showed {shown}"
    );
    assert!(
        exported
            .iter()
            .all(|event| event["kind"] == "connect_by_ip")
    );
    let audit = admin.get("/admin/audit?kind=audit_exported").await?.text();
    assert!(
        audit.contains(r#"data-kind="audit_exported""#) && audit.contains("kind=connect_by_ip"),
        "the export is not audited:\n{audit}"
    );
    Ok(())
}
