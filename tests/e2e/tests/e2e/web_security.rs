//! Browser-facing security properties: cross-site requests and WebSockets are refused for every Origin
//! variant an attacker can produce, every Set-Cookie carries the right flags, login rotates the session
//! (no fixation), and login cannot be turned into an open redirect.

use anyhow::Result;
use sallyport_e2e::portal::{ADMIN_PASSWORD, target_id};
use sallyport_e2e::{
    Gateway, GatewayOptions, HandshakeError, Sshd, SshdOptions, TargetNet, ensure_test_user,
    require_root,
};

/// Origins that are not this portal, for a portal at `https://127.0.0.1:{port}`. `None` is no Origin.
fn foreign_origins(port: u16) -> Vec<Option<String>> {
    vec![
        Some("https://evil.example".into()),
        Some(format!("https://evil.example:{port}")),
        Some("null".into()),
        None,
        Some(format!("http://127.0.0.1:{port}")),
        Some("https://127.0.0.1".into()),
        Some(format!("https://127.0.0.1:{}", port.wrapping_add(1))),
        Some(format!("https://127.0.0.1:{port}.evil.example")),
        Some(format!("https://evil.example/https://127.0.0.1:{port}")),
        Some(format!("https://127.0.0.1:{port}@evil.example")),
        Some(format!("wss://127.0.0.1:{port}")),
        Some(String::new()),
    ]
}

/// Checks the flags of one Set-Cookie value.
fn assert_cookie_flags(set_cookie: &str) {
    let lower = set_cookie.to_ascii_lowercase();
    assert!(
        set_cookie.starts_with("__Host-"),
        "cookie without the __Host- prefix: {set_cookie}"
    );
    for flag in ["; secure", "; httponly", "; samesite=strict", "; path=/"] {
        assert!(lower.contains(flag), "cookie lacks {flag}: {set_cookie}");
    }
    assert!(
        !lower.contains("domain="),
        "a __Host- cookie must not have a Domain: {set_cookie}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_cookies_fixation_and_redirects() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("websec")?;
    ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;

    // Session fixation: a cookie planted before login is not the one that works after it.
    let client = gateway.client()?;
    client.set_cookie("__Host-sallyport", "attacker-chosen-value");
    let origin = client.origin();
    let response = client
        .post_form(
            "/login",
            &[("username", "admin"), ("password", &gateway.password())],
            Some(&origin),
        )
        .await?;
    assert_eq!(response.status, 303);
    let set_cookies: Vec<String> = response
        .header_all("set-cookie")
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(set_cookies.len(), 1, "{set_cookies:?}");
    set_cookies.iter().for_each(|c| assert_cookie_flags(c));
    let first_token = client.cookie("__Host-sallyport").unwrap_or_default();
    assert_ne!(first_token, "attacker-chosen-value");
    assert!(
        first_token.len() >= 32,
        "a session token should carry at least 128 bits: {first_token}"
    );

    // The password change rotates the session again; the old token dies.
    let response = client
        .post_form(
            "/password",
            &[("new_password", ADMIN_PASSWORD), ("repeat", ADMIN_PASSWORD)],
            Some(&origin),
        )
        .await?;
    assert_eq!(response.status, 303);
    response
        .header_all("set-cookie")
        .into_iter()
        .for_each(assert_cookie_flags);
    let second_token = client.cookie("__Host-sallyport").unwrap_or_default();
    assert_ne!(second_token, first_token);
    let stale = gateway.client()?;
    stale.set_cookie("__Host-sallyport", &first_token);
    assert_eq!(
        stale.get("/targets").await?.status,
        303,
        "the token from before the password change still works"
    );
    let forged = gateway.client()?;
    forged.set_cookie("__Host-sallyport", "attacker-chosen-value");
    assert_eq!(forged.get("/targets").await?.status, 303);

    // Open redirects: whatever the request says, login sends the user to the portal's own pages.
    for path in [
        "/login?next=https://evil.example",
        "/login?next=//evil.example",
        "/login?redirect=%2F%2Fevil.example",
    ] {
        let attempt = gateway.client()?;
        let response = attempt
            .post_form(
                path,
                &[
                    ("username", "admin"),
                    ("password", ADMIN_PASSWORD),
                    ("next", "https://evil.example"),
                ],
                Some(&origin),
            )
            .await?;
        let location = response.location().unwrap_or_default().to_owned();
        assert!(
            location == "/targets" || location == "/password",
            "{path} redirected to {location:?}"
        );
    }
    let client = login_admin_again(&gateway).await?;
    let cookie = client.cookie_header();
    let alpha = target_id(&client, "alpha").await?;

    // Cross-site: every foreign Origin variant is refused, for state changes and WebSockets alike.
    let port = gateway.port();
    let variants = foreign_origins(port);
    assert!(variants.len() >= 6);
    for origin in &variants {
        let origin = origin.as_deref();
        for (path, form) in [
            (
                "/admin/users",
                vec![("username", "mallory"), ("role", "admin"), ("groups", "")],
            ),
            (
                "/admin/policies",
                vec![
                    ("name", "all"),
                    ("subjects", "role:user"),
                    ("targets", "*"),
                    ("protocols", "ssh"),
                ],
            ),
            (
                "/password",
                vec![
                    ("new_password", "mallory-password"),
                    ("repeat", "mallory-password"),
                ],
            ),
            ("/logout", vec![]),
        ] {
            let response = client.post_form(path, &form, origin).await?;
            assert_eq!(
                response.status,
                403,
                "POST {path} with Origin {origin:?} was not refused: {}",
                response.text()
            );
        }
        match client
            .ws_connect(&format!("/ws/terminal/{alpha}"), cookie.as_deref(), origin)
            .await
        {
            Err(HandshakeError::Refused { status, .. }) => {
                assert_eq!(status, 403, "WebSocket with Origin {origin:?}")
            }
            Err(other) => anyhow::bail!("WebSocket with Origin {origin:?}: {other}"),
            Ok(_) => anyhow::bail!("WebSocket with Origin {origin:?} was accepted"),
        }
        match client
            .ws_connect("/ws/watch/any", cookie.as_deref(), origin)
            .await
        {
            Err(HandshakeError::Refused { status, .. }) => {
                assert_eq!(status, 403, "watch WebSocket with Origin {origin:?}")
            }
            Err(other) => anyhow::bail!("watch WebSocket with Origin {origin:?}: {other}"),
            Ok(_) => anyhow::bail!("watch WebSocket with Origin {origin:?} was accepted"),
        }
    }
    // Nothing the refused requests asked for happened, and the login is still alive.
    let users = client.get("/admin/users").await?.text();
    assert!(
        !users.contains("mallory"),
        "a cross-site request created a user"
    );
    assert!(
        !client
            .get("/admin/policies")
            .await?
            .text()
            .contains(r#"data-policy="all""#)
    );
    assert_eq!(client.get("/targets").await?.status, 200);
    // The same requests from the portal's own origin work (the refusals above were about the Origin).
    let same = client.origin();
    let response = client
        .post_form(
            "/admin/users",
            &[("username", "mallory"), ("role", "user"), ("groups", "")],
            Some(&same),
        )
        .await?;
    assert_eq!(response.status, 200);
    Ok(())
}

/// Logs in as admin with the password the test already set.
async fn login_admin_again(gateway: &Gateway) -> Result<sallyport_e2e::Client> {
    let client = gateway.client()?;
    let origin = client.origin();
    let response = client
        .post_form(
            "/login",
            &[("username", "admin"), ("password", ADMIN_PASSWORD)],
            Some(&origin),
        )
        .await?;
    anyhow::ensure!(
        response.status == 303 && response.location() == Some("/targets"),
        "login failed: {}",
        response.status
    );
    Ok(client)
}
