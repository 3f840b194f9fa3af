//! Every route of the portal in one list, [`ROUTES`], and the router built from it: a handler is
//! reachable only through an entry of the list, so the list is the router's exact table of contents
//! (axum cannot list a router's routes). The authorization matrix (tests/e2e) checks that its spec
//! covers exactly this list, and the Origin layer's tests probe every state-changing entry of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodRouter, get, post};

use crate::{
    Portal, admin, assets, cli_api, cli_browser, connect_ip, mfa, pages, passkeys, review_api, sso,
    target_list, watch, ws,
};

/// Every route: the method (`GET`, `POST`, or `WS` for a WebSocket upgrade, which is a `GET`) and the
/// path pattern as axum spells it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/login/sso/{provider}"),
    ("GET", "/login/sso/{provider}/callback"),
    ("POST", "/api/sso/device"),
    ("POST", "/api/sso/device/poll"),
    ("GET", "/login/mfa"),
    ("POST", "/login/mfa"),
    ("POST", "/login/mfa/passkey/options"),
    ("POST", "/login/mfa/passkey"),
    ("POST", "/login/passkey/options"),
    ("POST", "/login/passkey"),
    ("GET", "/account/mfa"),
    ("POST", "/account/mfa"),
    ("POST", "/account/passkeys/options"),
    ("POST", "/account/passkeys"),
    ("POST", "/account/passkeys/{id}/remove"),
    ("GET", "/password"),
    ("POST", "/password"),
    ("GET", "/targets"),
    ("GET", "/connect-ip"),
    ("POST", "/connect-ip"),
    ("GET", "/connect/{target_id}"),
    ("WS", "/ws/terminal/{target_id}"),
    ("WS", "/ws/desktop/{target_id}"),
    ("POST", "/api/cli/login"),
    ("GET", "/login/cli"),
    ("GET", "/login/cli/confirm"),
    ("POST", "/login/cli/confirm"),
    ("POST", "/api/cli/exchange"),
    ("POST", "/api/review/login"),
    ("POST", "/api/review/logout"),
    ("GET", "/api/review/key"),
    ("GET", "/api/review/sessions"),
    ("GET", "/api/review/sessions/{id}/chunks"),
    ("GET", "/api/review/ledger"),
    ("GET", "/assets/{name}"),
    ("GET", "/admin"),
    ("GET", "/admin/users"),
    ("POST", "/admin/users"),
    ("POST", "/admin/users/{id}/update"),
    ("POST", "/admin/users/{id}/{action}"),
    ("POST", "/admin/password-sign-in"),
    ("GET", "/admin/targets"),
    ("POST", "/admin/targets"),
    ("POST", "/admin/targets/{id}/delete"),
    ("GET", "/admin/networks"),
    ("POST", "/admin/networks"),
    ("POST", "/admin/networks/delete"),
    ("POST", "/admin/networks/connect-by-ip"),
    ("GET", "/admin/policies"),
    ("POST", "/admin/policies"),
    ("POST", "/admin/policies/preview"),
    ("GET", "/admin/policies/{id}/edit"),
    ("POST", "/admin/policies/{id}/update"),
    ("POST", "/admin/policies/{id}/preview"),
    ("POST", "/admin/policies/{id}/delete"),
    ("GET", "/admin/hostkeys"),
    ("POST", "/admin/hostkeys/{target_id}/forget"),
    ("GET", "/admin/mfa"),
    ("POST", "/admin/mfa"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/audit/export"),
    ("GET", "/admin/edge"),
    ("GET", "/admin/metrics"),
    ("GET", "/admin/sessions"),
    ("POST", "/admin/sessions/{id}/terminate"),
    ("GET", "/admin/sessions/{id}/watch"),
    ("WS", "/ws/watch/{id}"),
];

/// The handler of one entry of [`ROUTES`] (the admin pages' handlers are the admin module's).
fn endpoint(method: &str, path: &str) -> Option<MethodRouter<Arc<Portal>>> {
    Some(match (method, path) {
        ("GET", "/") => get(pages::home),
        ("GET", "/login") => get(pages::login_form),
        ("POST", "/login") => post(pages::login),
        ("POST", "/logout") => post(pages::logout),
        ("GET", "/login/sso/{provider}") => get(sso::browser::start),
        ("GET", "/login/sso/{provider}/callback") => get(sso::browser::callback),
        ("POST", "/api/sso/device") => post(sso::device::start),
        ("POST", "/api/sso/device/poll") => post(sso::device::poll),
        ("GET", "/login/mfa") => get(mfa::code_form),
        ("POST", "/login/mfa") => post(mfa::verify_code),
        ("POST", "/login/mfa/passkey/options") => post(passkeys::sign_in::second_factor_options),
        ("POST", "/login/mfa/passkey") => post(passkeys::sign_in::second_factor),
        ("POST", "/login/passkey/options") => post(passkeys::sign_in::options),
        ("POST", "/login/passkey") => post(passkeys::sign_in::finish),
        ("GET", "/account/mfa") => get(mfa::account_page),
        ("POST", "/account/mfa") => post(mfa::enroll),
        ("POST", "/account/passkeys/options") => post(passkeys::account::registration_options),
        ("POST", "/account/passkeys") => post(passkeys::account::register),
        ("POST", "/account/passkeys/{id}/remove") => post(passkeys::account::remove),
        ("GET", "/password") => get(pages::password_form),
        ("POST", "/password") => post(pages::change_password),
        ("GET", "/targets") => get(target_list::targets),
        ("GET", "/connect-ip") => get(connect_ip::form),
        ("POST", "/connect-ip") => post(connect_ip::submit),
        ("GET", "/connect/{target_id}") => get(pages::connect_page),
        ("WS", "/ws/terminal/{target_id}") => get(ws::terminal),
        ("WS", "/ws/desktop/{target_id}") => get(ws::desktop),
        ("POST", "/api/cli/login") => post(cli_api::login),
        ("GET", "/login/cli") => get(cli_browser::start),
        ("GET", "/login/cli/confirm") => get(cli_browser::confirm_form),
        ("POST", "/login/cli/confirm") => post(cli_browser::confirm),
        ("POST", "/api/cli/exchange") => post(cli_browser::exchange),
        ("POST", "/api/review/login") => post(review_api::login),
        ("POST", "/api/review/logout") => post(review_api::logout),
        ("GET", "/api/review/key") => get(review_api::key),
        ("GET", "/api/review/sessions") => get(review_api::sessions),
        ("GET", "/api/review/sessions/{id}/chunks") => get(review_api::chunks),
        ("GET", "/api/review/ledger") => get(review_api::ledger),
        ("GET", "/assets/{name}") => get(assets::serve_asset),
        ("WS", "/ws/watch/{id}") => get(watch::watch_socket),
        _ => return admin::endpoint(method, path),
    })
}

/// The router of every entry of [`ROUTES`], without the layers (see `Portal::router`).
pub(crate) fn router() -> Router<Arc<Portal>> {
    let mut by_path: BTreeMap<&str, MethodRouter<Arc<Portal>>> = BTreeMap::new();
    for &(method, path) in ROUTES {
        let Some(handler) = endpoint(method, path) else {
            // A listed route without a handler answers 404 like any unknown path; the test below
            // makes sure there is none.
            continue;
        };
        let merged = match by_path.remove(path) {
            Some(others) => others.merge(handler),
            None => handler,
        };
        by_path.insert(path, merged);
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_route_has_a_handler_and_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for &(method, path) in ROUTES {
            assert!(
                matches!(method, "GET" | "POST" | "WS"),
                "{method} {path}: unknown method"
            );
            assert!(
                endpoint(method, path).is_some(),
                "{method} {path} is listed but has no handler"
            );
            assert!(
                seen.insert((method, path)),
                "{method} {path} is listed twice"
            );
        }
    }
}
