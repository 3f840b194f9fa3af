//! The policies page: who may reach which targets over which protocols, with port forwarding and the
//! desktop clipboard; the whole "who reaches what" under them; adding, editing, previewing (what a
//! draft would grant, add and remove, nothing saved) and deleting. The form is the picker editor of
//! [`super::policy_editor`], parsed by [`super::policy_form`]; a form that does not parse, or a name
//! already taken, comes back filled in as it was sent, with what to fix above it.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use sallyport_core::policy::{Policy, Subject, TargetSelector};
use sallyport_relay::preview::{PolicyPreview, picker_lists, preview_policy, reach_matrix};
use sallyport_state::{StateDb, StateError};

use super::policy_editor::{clipboard_words, editor, preview_tables, reach_table};
use super::policy_form::Draft;
use super::{AdminChange, Answer};
use crate::Portal;
use crate::access::AdminUser;
use crate::auth::CurrentUser;
use crate::html::components::{post_button, table};
use crate::html::{PageError, ShownTo, admin_page};

/// The form as sent: pairs, since its checkboxes repeat keys (see [`super::policy_form`]).
type Pairs = Form<Vec<(String, String)>>;

/// Items shown as their text, joined with commas.
fn joined<T>(items: &[T], text: impl Fn(&T) -> String) -> String {
    items.iter().map(text).collect::<Vec<_>>().join(", ")
}

/// `GET /admin/policies`.
pub(super) async fn list(
    State(portal): State<Arc<Portal>>,
    AdminUser(admin): AdminUser,
) -> Result<Markup, PageError> {
    let state = portal.broker.state();
    let policies = state.policies().shown_to(&admin)?;
    let reach = reach_matrix(state).shown_to(&admin)?;
    let lists = picker_lists(state).shown_to(&admin)?;
    let rows: Vec<Markup> = policies
        .iter()
        .map(|record| {
            let p = &record.policy;
            let delete = format!("/admin/policies/{}/delete", record.id);
            html! {
                tr data-policy=(p.name) {
                    td { (p.name) }
                    td { (joined(&p.subjects, Subject::to_text)) }
                    td { (joined(&p.targets, TargetSelector::to_text)) }
                    td { (joined(&p.protocols, |p| p.as_str().to_owned())) }
                    td { (if p.forwarding { "allowed" } else { "refused" }) }
                    td { (clipboard_words(p.clipboard)) }
                    td {
                        a href={ "/admin/policies/" (record.id) "/edit" } data-action="edit" { "Edit" }
                        " "
                        (post_button(&delete, "Delete"))
                    }
                }
            }
        })
        .collect();
    Ok(admin_page(
        "Policies",
        &admin,
        &[],
        html! {
            p {
                "Users reach a target when a policy names them, a group of theirs or their role, and the target "
                "by name, by tag, by network or all targets. Admins reach every target; auditors none."
            }
            (table(
                "policies",
                &["Name", "Who", "Targets", "Protocols", "Port forwarding", "Desktop clipboard", ""],
                &rows,
                "No policies yet: users reach no target until one names them.",
            ))
            h2 { "Who reaches what" }
            p { "Every enabled user and target the stored policies connect, decided by the rules a connect runs." }
            (reach_table(&reach))
            h2 { "Add a policy" }
            (editor(&lists, &Draft::new_policy(), None, None))
        },
    ))
}

/// The editor alone on its page: for a new policy or the one with id `editing`, with what to fix or
/// what it would change.
fn editor_page(
    state: &StateDb,
    admin: &CurrentUser,
    draft: &Draft,
    editing: Option<i64>,
    problem: Option<&str>,
    preview: Option<&PolicyPreview>,
) -> Result<Markup, PageError> {
    let lists = picker_lists(state).shown_to(admin)?;
    let title = if editing.is_some() {
        "Edit a policy"
    } else {
        "Add a policy"
    };
    Ok(admin_page(
        title,
        admin,
        &[],
        html! {
            p { a href="/admin/policies" { "Back to the policies" } }
            @if let Some(preview) = preview { (preview_tables(preview)) }
            (editor(&lists, draft, editing, problem))
        },
    ))
}

/// The form drawn again with `problem` above it, answered with `status`.
fn refused(
    change: &AdminChange,
    draft: &Draft,
    editing: Option<i64>,
    status: StatusCode,
    problem: &str,
) -> Result<Response, PageError> {
    let page = editor_page(
        change.portal.broker.state(),
        &change.admin,
        draft,
        editing,
        Some(problem),
        None,
    )?;
    Ok((status, page).into_response())
}

/// What the audit log keeps of a saved policy.
fn audit_detail(policy: &Policy) -> String {
    format!(
        "{}: {} -> {} over {}{}, desktop clipboard {}",
        policy.name,
        joined(&policy.subjects, Subject::to_text),
        joined(&policy.targets, TargetSelector::to_text),
        joined(&policy.protocols, |p| p.as_str().to_owned()),
        if policy.forwarding {
            " (port forwarding allowed)"
        } else {
            ""
        },
        clipboard_words(policy.clipboard)
    )
}

/// Runs `then` on the policy the form describes, or draws the form again saying what to fix (400).
fn with_policy(
    change: &AdminChange,
    pairs: &[(String, String)],
    editing: Option<i64>,
    then: impl FnOnce(&Draft, Policy) -> Result<Response, PageError>,
) -> Result<Response, PageError> {
    let draft = Draft::from_pairs(pairs);
    match draft.parse() {
        Ok(policy) => then(&draft, policy),
        Err(problem) => refused(change, &draft, editing, StatusCode::BAD_REQUEST, &problem),
    }
}

/// Saves through `write` (an add or an update): audited and back to the list, or the form again when
/// the name is taken (409), or the state database's error page.
fn save(
    change: &AdminChange,
    pairs: &[(String, String)],
    editing: Option<i64>,
    write: impl FnOnce(&Policy) -> Result<bool, StateError>,
) -> Result<Response, PageError> {
    with_policy(change, pairs, editing, |draft, policy| {
        saved(change, draft, &policy, editing, write)
    })
}

/// What [`save`] does once the form parsed.
fn saved(
    change: &AdminChange,
    draft: &Draft,
    policy: &Policy,
    editing: Option<i64>,
    write: impl FnOnce(&Policy) -> Result<bool, StateError>,
) -> Result<Response, PageError> {
    match write(policy) {
        Ok(true) => {}
        Ok(false) => return Err(change.refuse(StatusCode::NOT_FOUND, "there is no such policy")),
        Err(StateError::Exists(what)) => {
            let problem = format!("{what} already exists: choose another name");
            return refused(change, draft, editing, StatusCode::CONFLICT, &problem);
        }
        Err(other) => return Err(other).shown_to(&change.admin),
    }
    let kind = if editing.is_some() {
        "policy_updated"
    } else {
        "policy_added"
    };
    change.audit(kind, None, audit_detail(policy));
    Ok(Redirect::to("/admin/policies").into_response())
}

/// `POST /admin/policies`.
pub(super) async fn add(change: AdminChange, Form(pairs): Pairs) -> Result<Response, PageError> {
    let state = change.portal.broker.state();
    save(&change, &pairs, None, |policy| {
        state.add_policy(policy).map(|()| true)
    })
}

/// `GET /admin/policies/{id}/edit`.
pub(super) async fn edit(
    Path(id): Path<i64>,
    State(portal): State<Arc<Portal>>,
    AdminUser(admin): AdminUser,
) -> Result<Markup, PageError> {
    let state = portal.broker.state();
    let policies = state.policies().shown_to(&admin)?;
    let Some(record) = policies.into_iter().find(|r| r.id == id) else {
        return Err(PageError::not_found("there is no such policy").shown_to(&admin));
    };
    editor_page(
        state,
        &admin,
        &Draft::from_policy(&record.policy),
        Some(id),
        None,
        None,
    )
}

/// `POST /admin/policies/{id}/update`.
pub(super) async fn update(
    Path(id): Path<i64>,
    change: AdminChange,
    Form(pairs): Pairs,
) -> Result<Response, PageError> {
    let state = change.portal.broker.state();
    save(&change, &pairs, Some(id), |policy| {
        state.update_policy(id, policy)
    })
}

/// Draws the form again with what it would grant, add and remove; nothing is written.
fn preview(
    change: &AdminChange,
    pairs: &[(String, String)],
    editing: Option<i64>,
) -> Result<Response, PageError> {
    with_policy(change, pairs, editing, |draft, policy| {
        let state = change.portal.broker.state();
        let preview = change.check(preview_policy(state, &policy, editing))?;
        let page = editor_page(state, &change.admin, draft, editing, None, Some(&preview))?;
        Ok(page.into_response())
    })
}

/// `POST /admin/policies/preview`.
pub(super) async fn preview_new(
    change: AdminChange,
    Form(pairs): Pairs,
) -> Result<Response, PageError> {
    preview(&change, &pairs, None)
}

/// `POST /admin/policies/{id}/preview`.
pub(super) async fn preview_edit(
    Path(id): Path<i64>,
    change: AdminChange,
    Form(pairs): Pairs,
) -> Result<Response, PageError> {
    preview(&change, &pairs, Some(id))
}

/// `POST /admin/policies/{id}/delete`.
pub(super) async fn delete(Path(id): Path<i64>, change: AdminChange) -> Answer {
    change.check(change.portal.broker.state().delete_policy(id))?;
    change.done(
        "policy_deleted",
        None,
        format!("policy {id}"),
        "/admin/policies",
    )
}
