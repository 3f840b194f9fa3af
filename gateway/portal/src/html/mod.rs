//! The portal's HTML, built with maud templates that escape every value unless told otherwise:
//! [`layout`] (the one frame of every page: head, header with navigation and logout, main), [`components`]
//! (what pages repeat: tables, form fields, buttons that post, messages), [`time`] (moments in the
//! viewer's zone, durations) and [`PageError`] (the one
//! refusal of the HTML handlers, a page in words). No page is assembled from strings (`cargo xtask tidy`
//! refuses HTML inside `format!` and its kin).

pub(crate) mod components;
mod layout;
mod moving_on;
mod page_error;
pub(crate) mod time;

pub(crate) use layout::{Asset, Layout, admin_page, page, reviewer_page};
pub(crate) use moving_on::moving_on;
pub(crate) use page_error::{PageError, ShownTo};
