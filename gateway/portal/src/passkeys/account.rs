//! The passkeys part of the security page: the user's passkeys by name (added, last used, remove), and
//! adding one, as two JSON calls around the browser's `navigator.credentials.create`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use sallyport_state::StateError;
use serde::Deserialize;
use webauthn_rs::prelude::{RegisterPublicKeyCredential, Uuid};

use super::{credential, valid_name};
use crate::Portal;
use crate::api_error::ApiError;
use crate::auth::CurrentUser;
use crate::html::components::{field, post_button, table};
use crate::html::time::time_element;
use crate::html::{Asset, PageError, ShownTo};
use crate::mfa::audit;

/// The passkeys section of `user`'s security page.
pub(crate) fn section(portal: &Portal, user: &CurrentUser) -> Result<Markup, PageError> {
    let body = match portal.passkeys.relying_party() {
        Err(reason) => html! { p id="passkeys-off" { (reason) } },
        Ok(_) => {
            let records = portal
                .broker
                .state()
                .passkeys(user.user.user_id())
                .shown_to(user)?;
            let rows: Vec<Markup> = records
                .iter()
                .map(|record| {
                    html! {
                        tr data-passkey=(record.name) {
                            td { (record.name) }
                            td { (time_element(record.created_ms)) }
                            td { @match record.last_used_ms { Some(at) => (time_element(at)), None => "never" } }
                            td { (post_button(&format!("/account/passkeys/{}/remove", record.id), "Remove").data_action("remove-passkey")) }
                        }
                    }
                })
                .collect();
            html! {
                p { "A passkey signs you in without a password, or stands in for the code from your app after one." }
                (table("passkeys", &["Name", "Added", "Last used", ""], &rows, "No passkeys yet."))
                form.card id="passkey-register" data-options="/account/passkeys/options" data-finish="/account/passkeys" {
                    (field("Name", html! {
                        input name="name" id="passkey-name" maxlength="64" placeholder="laptop" required;
                    }))
                    button type="submit" id="add-passkey" { "Add a passkey" }
                }
                p.error id="passkey-error" role="alert" hidden {}
                (Asset::Script("local-time.js"))
                (Asset::Script("passkeys.js"))
            }
        }
    };
    Ok(html! {
        section aria-labelledby="passkeys-heading" {
            h2 id="passkeys-heading" { "Passkeys" }
            (body)
        }
    })
}

/// The name of the passkey about to be added.
#[derive(Deserialize)]
pub struct NewPasskey {
    name: String,
}

fn refused(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(status, "passkey_refused", message)
}

/// `POST /account/passkeys/options`: the creation options for a new passkey named `name`.
pub async fn registration_options(
    State(portal): State<Arc<Portal>>,
    user: CurrentUser,
    Json(new): Json<NewPasskey>,
) -> Result<Response, ApiError> {
    let relying_party = portal
        .passkeys
        .relying_party()
        .map_err(|reason| refused(StatusCode::NOT_FOUND, reason))?;
    let name = valid_name(&new.name).map_err(|why| refused(StatusCode::BAD_REQUEST, why))?;
    let state = portal.broker.state();
    let user_id = user.user.user_id();
    let existing = state.passkeys(user_id)?;
    if existing.iter().any(|record| record.name == name) {
        return Err(refused(
            StatusCode::CONFLICT,
            format!("you already have a passkey named {name}"),
        ));
    }
    let handle = Uuid::from_bytes(state.passkey_handle(user_id)?);
    let exclude = existing
        .iter()
        .filter_map(credential)
        .map(|passkey| passkey.cred_id().clone())
        .collect();
    let username = user.user.username();
    let (options, registration) = relying_party
        .start_passkey_registration(handle, username, username, Some(exclude))
        .map_err(|error| refused(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    // Ask for a discoverable credential where the authenticator can keep one, so that the passkey can
    // also sign in without a username; the library's check of the answer does not depend on it.
    let mut options = serde_json::to_value(options)
        .map_err(|error| refused(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    if let Some(selection) = options.pointer_mut("/publicKey/authenticatorSelection") {
        selection["residentKey"] = "preferred".into();
    }
    if !portal
        .passkeys
        .registrations
        .insert(user_id, (name.to_owned(), registration))
    {
        return Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many passkey registrations in progress; try again shortly",
        ));
    }
    Ok(Json(options).into_response())
}

/// `POST /account/passkeys`: the browser's new credential, checked against the registration started.
pub async fn register(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    user: CurrentUser,
    Json(answer): Json<RegisterPublicKeyCredential>,
) -> Result<Response, ApiError> {
    let relying_party = portal
        .passkeys
        .relying_party()
        .map_err(|reason| refused(StatusCode::NOT_FOUND, reason))?;
    let user_id = user.user.user_id();
    let username = user.user.username();
    let Some((name, registration)) = portal.passkeys.registrations.take(&user_id) else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "no passkey registration is in progress (or it expired); start again",
        ));
    };
    let passkey = relying_party
        .finish_passkey_registration(&answer, &registration)
        .map_err(|error| {
            let reason = format!("the new passkey was not accepted: {error}");
            audit(
                &portal,
                "passkey_refused",
                username,
                client,
                Some(reason.clone()),
            );
            refused(StatusCode::BAD_REQUEST, reason)
        })?;
    let stored = serde_json::to_string(&passkey)
        .map_err(|error| refused(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    match portal.broker.state().add_passkey(
        user_id,
        &name,
        passkey.cred_id(),
        &stored,
        sallyport_relay::now_ms(),
    ) {
        Ok(_) => {}
        Err(StateError::Exists(what)) => {
            return Err(refused(
                StatusCode::CONFLICT,
                format!("{what} exists already"),
            ));
        }
        Err(error) => return Err(error.into()),
    }
    audit(
        &portal,
        "passkey_added",
        username,
        client,
        Some(format!("passkey {name}")),
    );
    Ok(Json(serde_json::json!({ "name": name })).into_response())
}

/// `POST /account/passkeys/{id}/remove`.
pub async fn remove(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let removed = portal
        .broker
        .state()
        .remove_passkey(user.user.user_id(), id)
        .shown_to(&user)?;
    let Some(name) = removed else {
        return Err(PageError::not_found("you have no such passkey").shown_to(&user));
    };
    audit(
        &portal,
        "passkey_removed",
        user.user.username(),
        client,
        Some(format!("passkey {name}")),
    );
    Ok(Redirect::to("/account/mfa").into_response())
}
