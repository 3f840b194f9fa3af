//! Editing a policy over the portal's own forms: the edit page ticks the stored selectors, a preview of
//! a narrowing edit names who would lose and gain the target and saves nothing, a form that does not
//! parse or takes another policy's name comes back filled with what to fix, and the saved edit changes
//! who reaches what and is audited as `policy_updated`.

use anyhow::{Context, Result};
use sallyport_e2e::portal::{add_policy, create_user, login_admin};
use sallyport_e2e::{Client, Gateway, GatewayOptions, TargetNet, require_root};

/// The markup of the table `id` on `page` (empty when it is not there).
fn table<'a>(page: &'a str, id: &str) -> &'a str {
    page.split(&format!(r#"<table id="{id}">"#))
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or_default()
}

/// Whether the reach rows of `table` have `user` reaching `target`.
fn reaches(table: &str, user: &str, target: &str) -> bool {
    table.contains(&format!(r#"data-user="{user}" data-target="{target}""#))
}

async fn post(admin: &Client, path: &str, form: &[(&str, &str)]) -> Result<(u16, String)> {
    let origin = admin.origin();
    let response = admin.post_form(path, form, Some(&origin)).await?;
    Ok((response.status, response.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_is_edited_after_a_preview_and_refusals_keep_the_form() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("pedit")?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    let admin = login_admin(&gateway).await?;
    create_user(&admin, "ivy", "user", "ops").await?;
    create_user(&admin, "jon", "user", "").await?;
    add_policy(&admin, "ops-alpha", "group:ops", "name:alpha").await?;
    add_policy(&admin, "spare", "user:jon", "tag:none-yet").await?;

    let page = admin.get("/admin/policies").await?.text();
    let reach = table(&page, "reach");
    assert!(
        reaches(reach, "ivy", "alpha") && reach.contains("ops-alpha"),
        "ivy should reach alpha through ops-alpha: {reach}"
    );
    assert!(!reaches(reach, "jon", "alpha"), "{reach}");
    let id = page
        .split(r#"<tr data-policy="ops-alpha">"#)
        .nth(1)
        .and_then(|row| row.split(r#"href="/admin/policies/"#).nth(1))
        .and_then(|rest| rest.split('/').next())
        .context("no edit link for ops-alpha")?
        .to_owned();

    // The edit page ticks what is stored; a selector no list offers stays typed in "other".
    let edit = admin.get(&format!("/admin/policies/{id}/edit")).await?;
    assert_eq!(edit.status, 200);
    let edit = edit.text();
    for ticked in [
        r#"id="subject-group-ops" checked"#,
        r#"id="target-name-alpha" checked"#,
        r#"id="protocol-ssh" checked"#,
    ] {
        assert!(edit.contains(ticked), "{ticked} missing on the edit page");
    }
    let spare_id = page
        .split(r#"<tr data-policy="spare">"#)
        .nth(1)
        .and_then(|row| row.split(r#"href="/admin/policies/"#).nth(1))
        .and_then(|rest| rest.split('/').next())
        .context("no edit link for spare")?;
    let spare = admin
        .get(&format!("/admin/policies/{spare_id}/edit"))
        .await?
        .text();
    assert!(
        spare.contains(r#"id="policy-targets-other" value="tag:none-yet""#),
        "a tag no target carries should stay typed"
    );

    // The preview of moving the policy from the group to jon: who loses, who gains, nothing saved.
    let narrowed = [
        ("name", "ops-alpha"),
        ("subjects", "user:jon"),
        ("targets", "name:alpha"),
        ("protocols", "ssh"),
    ];
    let (status, preview) =
        post(&admin, &format!("/admin/policies/{id}/preview"), &narrowed).await?;
    assert_eq!(status, 200, "{preview}");
    assert!(reaches(table(&preview, "preview-removed"), "ivy", "alpha"));
    assert!(reaches(table(&preview, "preview-added"), "jon", "alpha"));
    assert!(reaches(table(&preview, "preview-granted"), "jon", "alpha"));
    assert!(preview.contains(r#"id="subject-user-jon" checked"#));
    let still = admin.get("/admin/policies").await?.text();
    assert!(
        reaches(table(&still, "reach"), "ivy", "alpha"),
        "the preview saved something"
    );

    // Refusals come back filled, saying what to fix.
    let update = format!("/admin/policies/{id}/update");
    let (status, bad) = post(
        &admin,
        &update,
        &[
            ("name", "ops-alpha"),
            ("subjects", "jon"),
            ("targets", "name:alpha"),
            ("protocols", "ssh"),
        ],
    )
    .await?;
    assert_eq!(status, 400);
    assert!(bad.contains("&quot;jon&quot; is not user:NAME, group:NAME or role:ROLE (under Who)"));
    assert!(
        bad.contains(r#"id="policy-name" value="ops-alpha""#),
        "the name was lost"
    );
    assert!(
        bad.contains(r#"id="target-name-alpha" checked"#),
        "the target was lost"
    );
    let mut taken = narrowed.to_vec();
    taken[0] = ("name", "spare");
    let (status, clash) = post(&admin, &update, &taken).await?;
    assert_eq!(status, 409);
    assert!(clash.contains("policy spare already exists: choose another name"));
    assert!(clash.contains(r#"id="subject-user-jon" checked"#));

    // The edit saved.
    let (status, _) = post(&admin, &update, &narrowed).await?;
    assert_eq!(status, 303);
    let after = admin.get("/admin/policies").await?.text();
    let reach = table(&after, "reach");
    assert!(
        reaches(reach, "jon", "alpha") && !reaches(reach, "ivy", "alpha"),
        "{reach}"
    );
    let log = admin.get("/admin/audit").await?.text();
    assert!(
        log.contains("policy_updated") && log.contains("ops-alpha: user:jon -&gt; name:alpha"),
        "the audit log lacks the edit"
    );
    Ok(())
}
