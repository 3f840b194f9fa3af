//! The authorization matrix: every HTTP endpoint and WebSocket of the portal, asked by an anonymous
//! visitor, a user a policy allows, another user it does not, an auditor and an admin; each answer must
//! match the spec table below. Then revocation: disabling a user, a password change and a logout end
//! that user's live sessions within a second.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use sallyport_e2e::portal::{
    Terminal, add_policy, create_user, first_login, login_admin, target_id,
};
use sallyport_e2e::{
    Client, Gateway, GatewayOptions, HandshakeError, Sshd, SshdOptions, TargetNet,
    ensure_test_user, require_root,
};

/// Who asks, in the order of the expectation columns.
const WHO: [&str; 5] = ["anonymous", "user", "other user", "auditor", "admin"];

/// The spec: method, path (`{alpha}` is the allowed target's id), expected status for each of [`WHO`].
/// 303 for anonymous is the redirect to the login page; 422 means the request got past authorization
/// and was refused for its (deliberately empty) form; 101 is an accepted WebSocket.
const SPEC: &[(&str, &str, [u16; 5])] = &[
    ("GET", "/", [303, 303, 303, 303, 303]),
    ("GET", "/login", [200, 200, 200, 200, 200]),
    ("POST", "/login", [422, 422, 422, 422, 422]),
    ("GET", "/assets/terminal.js", [200, 200, 200, 200, 200]),
    ("GET", "/assets/../state.db", [404, 404, 404, 404, 404]),
    // Without a login waiting for its second factor, the second step's page sends to the login page.
    ("GET", "/login/mfa", [303, 303, 303, 303, 303]),
    // Passkeys: this gateway has no public_url, so they are off (404); the answers are JSON only.
    (
        "POST",
        "/login/mfa/passkey/options",
        [404, 404, 404, 404, 404],
    ),
    ("POST", "/login/mfa/passkey", [415, 415, 415, 415, 415]),
    ("POST", "/login/passkey/options", [404, 404, 404, 404, 404]),
    ("POST", "/login/passkey", [415, 415, 415, 415, 415]),
    (
        "POST",
        "/account/passkeys/options",
        [303, 415, 415, 415, 415],
    ),
    ("POST", "/account/passkeys", [303, 415, 415, 415, 415]),
    (
        "POST",
        "/account/passkeys/999999/remove",
        [303, 404, 404, 404, 404],
    ),
    // The review API takes only its own bearer token, never the browser's cookie; its login takes JSON only.
    ("POST", "/api/review/login", [415, 415, 415, 415, 415]),
    ("POST", "/api/review/logout", [401, 401, 401, 401, 401]),
    ("GET", "/api/review/key", [401, 401, 401, 401, 401]),
    ("GET", "/api/review/sessions", [401, 401, 401, 401, 401]),
    (
        "GET",
        "/api/review/sessions/00112233445566778899aabbccddeeff/chunks",
        [401, 401, 401, 401, 401],
    ),
    ("GET", "/api/review/ledger", [401, 401, 401, 401, 401]),
    ("POST", "/login/mfa", [422, 422, 422, 422, 422]),
    ("GET", "/account/mfa", [303, 200, 200, 200, 200]),
    ("POST", "/account/mfa", [303, 422, 422, 422, 422]),
    ("GET", "/password", [303, 200, 200, 200, 200]),
    ("POST", "/password", [303, 422, 422, 422, 422]),
    ("GET", "/targets", [303, 200, 200, 200, 200]),
    ("GET", "/connect-ip", [303, 200, 200, 200, 200]),
    ("POST", "/connect-ip", [303, 422, 422, 422, 422]),
    ("GET", "/connect/{alpha}", [303, 200, 403, 403, 200]),
    ("GET", "/connect/999999", [303, 404, 404, 404, 404]),
    ("WS", "/ws/terminal/{alpha}", [303, 101, 403, 403, 101]),
    ("WS", "/ws/terminal/999999", [303, 404, 404, 404, 404]),
    ("WS", "/ws/desktop/999999", [303, 404, 404, 404, 404]),
    // The CLI's login, like the review API's, takes JSON only (and no cookie).
    ("POST", "/api/cli/login", [415, 415, 415, 415, 415]),
    // The programs' browser sign-in: without the program's request (400), and the exchange is JSON only.
    ("GET", "/login/cli", [400, 400, 400, 400, 400]),
    ("GET", "/login/cli/confirm", [400, 400, 400, 400, 400]),
    ("POST", "/login/cli/confirm", [303, 422, 422, 422, 422]),
    ("POST", "/api/cli/exchange", [415, 415, 415, 415, 415]),
    // Single sign-on: this gateway has no provider, so the paths name none; the device routes are JSON only.
    ("GET", "/login/sso/NoSuchIdP", [404, 404, 404, 404, 404]),
    (
        "GET",
        "/login/sso/NoSuchIdP/callback",
        [404, 404, 404, 404, 404],
    ),
    ("POST", "/api/sso/device", [415, 415, 415, 415, 415]),
    ("POST", "/api/sso/device/poll", [415, 415, 415, 415, 415]),
    // The dashboard: auditors read it too (without the admin-only watch links).
    ("GET", "/admin", [303, 403, 403, 200, 200]),
    ("GET", "/admin/users", [303, 403, 403, 403, 200]),
    ("POST", "/admin/users", [303, 403, 403, 403, 422]),
    ("POST", "/admin/password-sign-in", [303, 403, 403, 403, 303]),
    (
        "POST",
        "/admin/users/999999/update",
        [303, 403, 403, 403, 422],
    ),
    (
        "POST",
        "/admin/users/999999/disable",
        [303, 403, 403, 403, 404],
    ),
    (
        "POST",
        "/admin/users/999999/enable",
        [303, 403, 403, 403, 404],
    ),
    (
        "POST",
        "/admin/users/999999/delete",
        [303, 403, 403, 403, 404],
    ),
    (
        "POST",
        "/admin/users/999999/reset-password",
        [303, 403, 403, 403, 404],
    ),
    (
        "POST",
        "/admin/users/999999/reset-mfa",
        [303, 403, 403, 403, 404],
    ),
    ("GET", "/admin/mfa", [303, 403, 403, 403, 200]),
    ("POST", "/admin/mfa", [303, 403, 403, 403, 303]),
    ("GET", "/admin/targets", [303, 403, 403, 403, 200]),
    ("POST", "/admin/targets", [303, 403, 403, 403, 422]),
    (
        "POST",
        "/admin/targets/999999/delete",
        [303, 403, 403, 403, 400],
    ),
    ("GET", "/admin/networks", [303, 403, 403, 403, 200]),
    ("POST", "/admin/networks", [303, 403, 403, 403, 422]),
    ("POST", "/admin/networks/delete", [303, 403, 403, 403, 422]),
    (
        "POST",
        "/admin/networks/connect-by-ip",
        [303, 403, 403, 403, 422],
    ),
    ("GET", "/admin/policies", [303, 403, 403, 403, 200]),
    // The policy form takes repeated keys as pairs, so an empty one is refused in words (400).
    ("POST", "/admin/policies", [303, 403, 403, 403, 400]),
    ("POST", "/admin/policies/preview", [303, 403, 403, 403, 400]),
    (
        "GET",
        "/admin/policies/999999/edit",
        [303, 403, 403, 403, 404],
    ),
    (
        "POST",
        "/admin/policies/999999/update",
        [303, 403, 403, 403, 400],
    ),
    (
        "POST",
        "/admin/policies/999999/preview",
        [303, 403, 403, 403, 400],
    ),
    (
        "POST",
        "/admin/policies/999999/delete",
        [303, 403, 403, 403, 303],
    ),
    ("GET", "/admin/hostkeys", [303, 403, 403, 403, 200]),
    (
        "POST",
        "/admin/hostkeys/999999/forget",
        [303, 403, 403, 403, 303],
    ),
    ("GET", "/admin/audit", [303, 403, 403, 200, 200]),
    (
        "GET",
        "/admin/audit/export?format=csv",
        [303, 403, 403, 200, 200],
    ),
    ("GET", "/admin/edge", [303, 403, 403, 403, 200]),
    ("GET", "/admin/metrics", [303, 403, 403, 403, 200]),
    ("GET", "/admin/sessions", [303, 403, 403, 403, 200]),
    (
        "POST",
        "/admin/sessions/no-such-session/terminate",
        [303, 403, 403, 403, 404],
    ),
    (
        "GET",
        "/admin/sessions/no-such-session/watch",
        [303, 403, 403, 403, 404],
    ),
    ("WS", "/ws/watch/no-such-session", [303, 403, 403, 403, 404]),
    ("GET", "/no-such-page", [404, 404, 404, 404, 404]),
    // Last: logging out ends the login.
    ("POST", "/logout", [303, 303, 303, 303, 303]),
];

/// Paths of the spec that no route of the portal serves: they must answer 404.
const UNROUTED: &[&str] = &["/assets/../state.db", "/no-such-page"];

/// True when the spec's `path` is one of the portal's route `pattern` (`{...}` matches any segment).
fn matches_route(pattern: &str, path: &str) -> bool {
    // A row may carry a query string (the export's format); routes match on the path alone.
    let path = path
        .split('?')
        .next()
        .unwrap_or(path)
        .replace("{alpha}", "1");
    let (pattern, path): (Vec<_>, Vec<_>) =
        (pattern.split('/').collect(), path.split('/').collect());
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(&path)
            .all(|(want, got)| want.starts_with('{') || want == got)
}

/// The spec covers exactly the portal's routes: every route has a row (a `WS` row for a WebSocket),
/// and every row is a route, but for the few [`UNROUTED`] paths that check the 404.
#[test]
fn the_spec_covers_every_route_of_the_portal() {
    let routes = sallyport_portal::ROUTES;
    let missing: Vec<_> = routes
        .iter()
        .filter(|(method, pattern)| {
            !SPEC
                .iter()
                .any(|(m, path, _)| m == method && matches_route(pattern, path))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the spec: {missing:?}"
    );
    let unknown: Vec<_> = SPEC
        .iter()
        .filter(|(method, path, _)| {
            !UNROUTED.contains(path)
                && !routes
                    .iter()
                    .any(|(m, pattern)| m == method && matches_route(pattern, path))
        })
        .map(|(method, path, _)| (method, path))
        .collect();
    assert!(
        unknown.is_empty(),
        "spec rows that are no route: {unknown:?}"
    );
    for path in UNROUTED {
        let row = SPEC.iter().find(|(_, p, _)| p == path);
        assert_eq!(
            row.map(|(_, _, statuses)| *statuses),
            Some([404; 5]),
            "{path}"
        );
    }
}

async fn ask(client: &Client, method: &str, path: &str) -> Result<u16> {
    let origin = client.origin();
    match method {
        "GET" => Ok(client.get(path).await?.status),
        "POST" => Ok(client.post_form(path, &[], Some(&origin)).await?.status),
        "WS" => match client.ws_connect_same_origin(path).await {
            Ok(mut ws) => {
                let _ = ws.close(None).await;
                Ok(101)
            }
            Err(HandshakeError::Refused { status, .. }) => Ok(status),
            Err(other) => bail!("{path}: {other}"),
        },
        other => bail!("unknown method {other}"),
    }
}

struct World {
    _net: TargetNet,
    _sshd: Sshd,
    gateway: Gateway,
    admin: Client,
    alpha: i64,
}

async fn world(tag: &str) -> Result<World> {
    require_root()?;
    let net = TargetNet::create(tag)?;
    ensure_test_user()?;
    let sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net).target(
        "beta",
        &net.ns_addr().to_string(),
        22,
    ))
    .await?;
    let admin = login_admin(&gateway).await?;
    let alpha = target_id(&admin, "alpha").await?;
    Ok(World {
        _net: net,
        _sshd: sshd,
        gateway,
        admin,
        alpha,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_each_role_as_the_spec_says() -> Result<()> {
    let world = world("authz").await?;
    let admin = &world.admin;
    let alice_once = create_user(admin, "alice", "user", "").await?;
    let bob_once = create_user(admin, "bob", "user", "ops").await?;
    let audrey_once = create_user(admin, "audrey", "auditor", "").await?;
    add_policy(admin, "alice-alpha", "user:alice", "name:alpha").await?;
    // A policy for bob's group that names another target: bob must still not reach alpha.
    add_policy(admin, "ops-beta", "group:ops", "name:beta").await?;
    let clients = [
        world.gateway.client()?,
        first_login(&world.gateway, "alice", &alice_once, "alice-password-1").await?,
        first_login(&world.gateway, "bob", &bob_once, "bob-password-12").await?,
        first_login(&world.gateway, "audrey", &audrey_once, "audrey-password").await?,
        admin.clone(),
    ];
    // The target list shows each user exactly what they may reach.
    let list = |page: String| {
        ["alpha", "beta"]
            .into_iter()
            .filter(|t| page.contains(&format!(r#"data-target="{t}""#)))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(clients[1].get("/targets").await?.text()),
        vec!["alpha"]
    );
    assert_eq!(list(clients[2].get("/targets").await?.text()), vec!["beta"]);
    assert!(list(clients[3].get("/targets").await?.text()).is_empty());
    assert_eq!(
        list(clients[4].get("/targets").await?.text()),
        vec!["alpha", "beta"]
    );

    let mut mismatches = Vec::new();
    for (method, path, expected) in SPEC {
        let path = path.replace("{alpha}", &world.alpha.to_string());
        for (index, client) in clients.iter().enumerate() {
            let status = ask(client, method, &path).await?;
            if status != expected[index] {
                mismatches.push(format!(
                    "{method} {path} as {}: got {status}, spec says {}",
                    WHO[index], expected[index]
                ));
            }
        }
    }
    assert!(SPEC.len() >= 35);
    if !mismatches.is_empty() {
        bail!(
            "{} answers differ from the spec:\n{}",
            mismatches.len(),
            mismatches.join("\n")
        );
    }
    Ok(())
}

/// Waits for the `terminated` error on `terminal`, returning how long it took.
async fn terminated_within(terminal: &mut Terminal, started: Instant) -> Result<Duration> {
    let (kind, message) = terminal.expect_error().await?;
    let took = started.elapsed();
    if kind != "terminated" {
        bail!("expected a terminated error, got {kind}: {message}");
    }
    Ok(took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_ends_live_sessions_within_a_second() -> Result<()> {
    let world = world("revoke").await?;
    let user = ensure_test_user()?;
    let admin = &world.admin;
    let once = create_user(admin, "carol", "user", "").await?;
    add_policy(admin, "carol-alpha", "user:carol", "name:alpha").await?;
    let carol = first_login(&world.gateway, "carol", &once, "carol-password-1").await?;
    let origin = carol.origin();

    // 1. A password change ends the session (and the other logins).
    let mut terminal = Terminal::open(&carol, world.alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;
    let started = Instant::now();
    let response = carol
        .post_form(
            "/password",
            &[
                ("new_password", "carol-password-2"),
                ("repeat", "carol-password-2"),
            ],
            Some(&origin),
        )
        .await?;
    assert_eq!(response.status, 303);
    let took = terminated_within(&mut terminal, started).await?;
    assert!(
        took < Duration::from_secs(1),
        "password change took {took:?} to end the session"
    );
    assert!(terminal.received.control("error").is_some_and(|e| {
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("password was changed")
    }));

    // 2. Logout.
    let mut terminal = Terminal::open(&carol, world.alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;
    let started = Instant::now();
    assert_eq!(
        carol.post_form("/logout", &[], Some(&origin)).await?.status,
        303
    );
    let took = terminated_within(&mut terminal, started).await?;
    assert!(took < Duration::from_secs(1), "logout took {took:?}");
    assert_eq!(
        carol.get("/targets").await?.status,
        303,
        "the login survived the logout"
    );

    // 3. An admin disables the user.
    let carol = world.gateway.client()?;
    let response = carol
        .post_form(
            "/login",
            &[("username", "carol"), ("password", "carol-password-2")],
            Some(&origin),
        )
        .await?;
    assert_eq!(response.status, 303, "{}", response.text());
    let mut terminal = Terminal::open(&carol, world.alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;
    let users_page = admin.get("/admin/users").await?.text();
    let carol_id = users_page
        .split(r#"<tr data-user="carol">"#)
        .nth(1)
        .and_then(|row| row.split("/admin/users/").nth(1))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let started = Instant::now();
    let response = admin
        .post_form(
            &format!("/admin/users/{carol_id}/disable"),
            &[],
            Some(&admin.origin()),
        )
        .await?;
    assert_eq!(response.status, 303, "{}", response.text());
    let took = terminated_within(&mut terminal, started).await?;
    assert!(took < Duration::from_secs(1), "disabling took {took:?}");
    assert_eq!(
        carol.get("/targets").await?.status,
        303,
        "a disabled user kept their login"
    );

    // The recording says how each session ended.
    let store = sallyport_recordings::Store::open_read_only(&world.gateway.recordings_db())?;
    let terminated = store
        .sessions()?
        .into_iter()
        .filter(|s| {
            s.user == "carol" && s.outcome == Some(sallyport_recordings::Outcome::Terminated)
        })
        .count();
    assert_eq!(terminated, 3);
    Ok(())
}
