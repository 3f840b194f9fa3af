//! [`Layout`]: the frame of every page. The header names the portal, links what the viewer may use
//! (targets, the admin or audit pages by role, their security settings) and has the logout button; the
//! head carries the page's own stylesheets and scripts ([`Asset`]); the body may carry the WebSocket
//! path the page's script reads (`data-ws-path`).

use maud::{DOCTYPE, Markup, Render, html};
use sallyport_core::policy::{Authenticated, Role};

use crate::auth::CurrentUser;

/// A stylesheet or script of the portal's own assets (`/assets/NAME`) that a page needs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Asset {
    /// A stylesheet.
    Style(&'static str),
    /// A script, deferred: deferred scripts run in order once the page is parsed, so a page's script
    /// finds its elements and the libraries listed before it.
    Script(&'static str),
}

impl Asset {
    /// What the terminal pages (connecting and watching) load before their own script.
    pub(crate) const XTERM: [Asset; 3] = [
        Asset::Style("xterm.css"),
        Asset::Script("xterm.js"),
        Asset::Script("addon-fit.js"),
    ];
}

impl Render for Asset {
    fn render(&self) -> Markup {
        match *self {
            Asset::Style(name) => html! { link rel="stylesheet" href={ "/assets/" (name) }; },
            Asset::Script(name) => html! { script src={ "/assets/" (name) } defer {} },
        }
    }
}

/// One page's frame: its title, its viewer (none before login), its assets and WebSocket path.
#[derive(Default)]
pub(crate) struct Layout<'a> {
    pub(crate) title: &'a str,
    pub(crate) viewer: Option<&'a Authenticated>,
    pub(crate) assets: &'a [Asset],
    /// The WebSocket the page's script opens, on `<body data-ws-path>`.
    pub(crate) ws_path: Option<String>,
}

impl Layout<'_> {
    /// The whole document around `main`.
    pub(crate) fn render(&self, main: Markup) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · Sallyport" }
                    link rel="stylesheet" href="/assets/style.css";
                    @for asset in self.assets { (asset) }
                }
                body data-ws-path=[self.ws_path.as_deref()] {
                    // The first thing a keyboard reaches: straight past the navigation.
                    a.skip href="#main" { "Skip to the page" }
                    header {
                        span.brand { "Sallyport" }
                        nav.site aria-label="Portal" {
                            a href="/targets" { "Targets" }
                            @if let Some(viewer) = self.viewer {
                                @match viewer.role() {
                                    Role::Admin => a href="/admin" { "Admin" },
                                    Role::Auditor => {
                                        a href="/admin" { "Dashboard" }
                                        a href="/admin/audit" { "Audit log" }
                                    },
                                    Role::User => {},
                                }
                                a href="/account/mfa" { "Security" }
                            }
                        }
                        @if let Some(viewer) = self.viewer {
                            span.who { (viewer.username()) " (" (viewer.role().as_str()) ")" }
                            form method="post" action="/logout" {
                                button type="submit" id="logout" { "Log out" }
                            }
                        }
                    }
                    main id="main" { (main) }
                }
            }
        }
    }
}

/// A plain page: `title`, seen by `viewer`, around `main`.
pub(crate) fn page(title: &str, viewer: Option<&Authenticated>, main: Markup) -> Markup {
    Layout {
        title,
        viewer,
        ..Layout::default()
    }
    .render(main)
}

/// The admin pages' own navigation, above their heading.
fn admin_nav() -> Markup {
    const PAGES: [(&str, &str); 9] = [
        ("/admin/users", "Users"),
        ("/admin/targets", "Targets"),
        ("/admin/networks", "Networks"),
        ("/admin/policies", "Policies"),
        ("/admin/hostkeys", "Host keys"),
        ("/admin/mfa", "MFA"),
        ("/admin/sessions", "Live sessions"),
        ("/admin/audit", "Audit log"),
        ("/admin/edge", "Edge"),
    ];
    html! {
        nav.admin-nav aria-label="Administration" {
            @for (href, text) in PAGES { a href=(href) { (text) } }
        }
    }
}

/// An admin page: the admin navigation, the heading `title`, then `body`; `assets` in the head.
pub(crate) fn admin_page(
    title: &str,
    admin: &CurrentUser,
    assets: &[Asset],
    body: Markup,
) -> Markup {
    Layout {
        title,
        viewer: Some(&admin.user),
        assets,
        ws_path: None,
    }
    .render(html! {
        (admin_nav())
        h1 { (title) }
        (body)
    })
}

/// A page for admins and auditors: an admin sees it as an [`admin_page`]; an auditor, who may read but
/// not change, sees the heading and `body` without the admin navigation (whose pages would refuse them).
pub(crate) fn reviewer_page(
    title: &str,
    viewer: &CurrentUser,
    assets: &[Asset],
    body: Markup,
) -> Markup {
    if viewer.user.role() == Role::Admin {
        return admin_page(title, viewer, assets, body);
    }
    Layout {
        title,
        viewer: Some(&viewer.user),
        assets,
        ws_path: None,
    }
    .render(html! { h1 { (title) } (body) })
}
