//! What the pages repeat, each drawn one way: [`table`] (headers, rows, an empty-state row, inside a
//! wrapper that scrolls sideways on a narrow screen), [`field`] (a label tied to its input by wrapping
//! it), [`options`] (a select's choices), [`PostButton`] (a one-button form that posts), and the
//! messages [`error`] and [`notice`].

use maud::{Markup, Render, html};

/// A table with an `id`, its column headers and its rows; with no rows, one row saying `empty`.
pub(crate) fn table(id: &str, headers: &[&str], rows: &[Markup], empty: &str) -> Markup {
    html! {
        div.table-scroll {
            table id=(id) {
                thead { tr { @for header in headers { th scope="col" { (header) } } } }
                tbody {
                    @for row in rows { (row) }
                    @if rows.is_empty() {
                        tr.empty { td colspan=(headers.len()) { (empty) } }
                    }
                }
            }
        }
    }
}

/// A form field: `label` and its `input` (any control), tied together by the label around both.
pub(crate) fn field(label: &str, input: Markup) -> Markup {
    html! { label { (label) " " (input) } }
}

/// The `<option>`s of a select: each `(value, text)`, the one whose value is `selected` chosen.
pub(crate) fn options(choices: &[(&str, &str)], selected: Option<&str>) -> Markup {
    html! {
        @for &(value, text) in choices {
            option value=(value) selected[selected == Some(value)] { (text) }
        }
    }
}

/// A form of one button that posts to `action`, with hidden fields and the button's `data-action` and
/// class for the pages' tests and scripts to find it by.
pub(crate) struct PostButton<'a> {
    action: &'a str,
    label: &'a str,
    hidden: Vec<(&'a str, String)>,
    data_action: Option<&'a str>,
    class: Option<&'a str>,
}

/// A [`PostButton`] labelled `label` that posts to `action`.
pub(crate) fn post_button<'a>(action: &'a str, label: &'a str) -> PostButton<'a> {
    PostButton {
        action,
        label,
        hidden: Vec::new(),
        data_action: None,
        class: None,
    }
}

impl<'a> PostButton<'a> {
    /// Sends `name=value` with the post.
    pub(crate) fn hidden(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.hidden.push((name, value.into()));
        self
    }

    /// The button's `data-action`.
    pub(crate) fn data_action(mut self, action: &'a str) -> Self {
        self.data_action = Some(action);
        self
    }

    /// The button's class.
    pub(crate) fn class(mut self, class: &'a str) -> Self {
        self.class = Some(class);
        self
    }
}

impl Render for PostButton<'_> {
    fn render(&self) -> Markup {
        html! {
            form method="post" action=(self.action) class="inline" {
                @for (name, value) in &self.hidden { input type="hidden" name=(name) value=(value); }
                button type="submit" class=[self.class] data-action=[self.data_action] { (self.label) }
            }
        }
    }
}

/// What went wrong, where a script or test finds it (`#error`) and a screen reader announces it.
pub(crate) fn error(words: &str) -> Markup {
    html! { p.error id="error" role="alert" { (words) } }
}

/// What was done, announced politely.
pub(crate) fn notice(words: Markup) -> Markup {
    html! { p.notice role="status" { (words) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_draw_their_headers_rows_and_empty_state_escaped() {
        let row = html! { tr data-user="<x>" { td { "a & b" } } };
        assert_eq!(
            table("users", &["User", ""], &[row], "no users").into_string(),
            r#"<div class="table-scroll"><table id="users"><thead><tr><th scope="col">User</th><th scope="col"></th></tr></thead><tbody><tr data-user="&lt;x&gt;"><td>a &amp; b</td></tr></tbody></table></div>"#
        );
        assert!(
            table("users", &["User", "Role"], &[], "No users yet.")
                .into_string()
                .contains(r#"<tr class="empty"><td colspan="2">No users yet.</td></tr>"#)
        );
    }

    #[test]
    fn buttons_post_their_hidden_fields_and_name_their_action() {
        assert_eq!(
            post_button("/admin/users/7/delete", "Delete")
                .data_action("delete")
                .render()
                .into_string(),
            r#"<form method="post" action="/admin/users/7/delete" class="inline"><button type="submit" data-action="delete">Delete</button></form>"#
        );
        assert_eq!(
            post_button("/admin/networks/delete", "Delete")
                .hidden("cidr", "10.0.0.0/8")
                .class("danger")
                .render()
                .into_string(),
            r#"<form method="post" action="/admin/networks/delete" class="inline"><input type="hidden" name="cidr" value="10.0.0.0/8"><button type="submit" class="danger">Delete</button></form>"#
        );
    }

    #[test]
    fn fields_and_options_tie_labels_and_mark_the_choice() {
        assert_eq!(
            field("Name", html! { input name="name"; }).into_string(),
            r#"<label>Name <input name="name"></label>"#
        );
        assert_eq!(
            options(&[("a", "A"), ("b", "B")], Some("b")).into_string(),
            r#"<option value="a">A</option><option value="b" selected>B</option>"#
        );
    }
}
