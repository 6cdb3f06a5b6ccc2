//! The admin console at `/console` (DESIGN §12), as a person uses it: signed in with an
//! API token in the system's headless Chromium, every control found by its role and
//! accessible name, and every change it makes checked over the API. Also how the binary
//! serves it: the page for any view (deep links), hashed assets cached for good, the
//! playground's strict policy, nothing from another origin.
use std::time::Duration;

use reqwest::{StatusCode, Url, header::HeaderMap};
use serde_json::{Value, json};

use crate::helpers::{
    CREATE_SECRET, Page, Store, TestApp, assert_page_guarded, both_stores, data, dialog, header,
    region, row, short_id, whole_page,
};

/// How long a change made elsewhere may take to show in the open page before the test
/// tries again (a first change may land before the page's subscription is set up).
const LIVE_WAIT: Duration = Duration::from_secs(5);
const LIVE_TRIES: usize = 10;

const SECRET_STATE: &str = "query ConsoleTestSecret($name: String!) {
    secret(name: $name) { state currentVersion description }
    dependents(secretName: $name) { state resource { name } }
}";
const UPDATE: &str = "mutation ConsoleTestUpdate($name: String!, $value: String!) {
    updateSecret(input: { name: $name, value: $value }) { secret { currentVersion } }
}";

async fn get(app: &TestApp, path: &str) -> (StatusCode, HeaderMap, String) {
    app.send(|http, url| http.get(url), path).await
}

/// The shared guards, with styles from this origin only: no nonce, no hash.
#[track_caller]
fn assert_guarded(what: &str, headers: &HeaderMap) {
    let directives = assert_page_guarded(what, headers);
    assert_eq!(
        directives.get("style-src").map(String::as_str),
        Some("'self'"),
        "{what}: {directives:?}"
    );
    assert!(
        directives.keys().all(|d| d != "style-src-attr"),
        "{what}: {directives:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_the_console_whole_under_a_strict_policy() {
    let app = TestApp::spawn(Store::Sqlite).await;

    // The page, for the console's root and for any view of it (a deep link).
    let (_, _, index) = get(&app, "/console").await;
    for path in ["/console", "/console/", "/console/secrets/DB_URL"] {
        let (status, headers, html) = get(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&headers, "cache-control"), "no-cache", "{path}");
        assert_guarded(path, &headers);
        assert_eq!(html, index, "{path} is not the page");
    }
    assert!(
        !index.contains("://"),
        "the page names another origin:\n{index}"
    );
    assert!(!index.contains("<style"), "inline style:\n{index}");

    // Its scripts and styles: Vite's hashed files, cached for good.
    let links: Vec<&str> = ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| index.split(attribute).skip(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let assets: Vec<&str> = links
        .iter()
        .copied()
        .filter(|link| link.starts_with("/console/assets/"))
        .collect();
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "{links:?}"
    );
    for asset in assets {
        let (status, headers, body) = get(&app, asset).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        let expected = if asset.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&headers, "content-type"), expected, "{asset}");
        assert_eq!(
            header(&headers, "cache-control"),
            "public, max-age=31536000, immutable",
            "{asset}"
        );
        assert_guarded(asset, &headers);
        assert!(!body.is_empty(), "{asset}");
    }
    // The icon's name carries no hash: revalidated.
    let (status, headers, _) = get(&app, "/console/favicon.svg").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "image/svg+xml");
    assert_eq!(header(&headers, "cache-control"), "no-cache");

    // A file that is not in the build is not the page.
    for missing in [
        "/console/assets/index-00000000.js",
        "/console/assets/nothing",
        "/console/secrets/app.js",
    ] {
        let (status, _, body) = get(&app, missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
    }
}

/// A browser on the console, its server's origin, and what must be kept nowhere.
struct Session {
    page: Page,
    base: Url,
    kept: Vec<(&'static str, String)>,
}

impl Session {
    async fn open(app: &TestApp, path: &str) -> Self {
        let base = Url::parse(app.base_url()).expect("a URL");
        let origin = base.origin().ascii_serialization();
        let mut page = Page::launch(&origin).await;
        page.goto(path).await;
        Self {
            page,
            base,
            kept: Vec::new(),
        }
    }

    /// Signs in with `token` and waits for what the console shows then.
    async fn sign_in(&mut self, token: &str, then: &str) -> String {
        self.kept.push(("token", token.to_owned()));
        self.page.fill(whole_page(), "API token", token).await;
        self.page.click("Sign in").await;
        self.page.expect_text(whole_page(), then).await
    }

    /// A value typed into the page: never to be kept by the browser.
    fn typed(&mut self, value: &str) -> String {
        self.kept.push(("value", value.to_owned()));
        value.to_owned()
    }

    /// What every run must show: no policy violation, no script or console error, every
    /// request to this server, at most one WebSocket (the live updates), and nothing kept
    /// in the origin's storage or in the profile on disk.
    async fn assert_safe_and_close(mut self) {
        let observed = self.page.step(json!({ "step": "observed" })).await;
        let stored = self.page.step(json!({ "step": "storage" })).await;
        let kept: Vec<(&str, &str)> = self
            .kept
            .iter()
            .map(|(what, text)| (*what, text.as_str()))
            .collect();
        let storage = stored["storage"].as_str().unwrap_or_default();
        for (what, text) in &kept {
            assert!(!storage.contains(text), "the {what} is kept in {storage}");
        }
        assert_eq!(stored["storedKeys"], json!([]), "{stored:#}");
        let closed = self.page.finish(&kept).await;
        assert_eq!(closed["keptInProfile"], json!([]), "{closed:#}");

        assert_eq!(observed["violations"], json!([]), "{observed:#}");
        assert_eq!(observed["pageErrors"], json!([]), "{observed:#}");
        assert_eq!(observed["consoleErrors"], json!([]), "{observed:#}");
        let requests = observed["requests"].as_array().expect("requests");
        assert!(!requests.is_empty(), "{observed:#}");
        for request in requests {
            let url = Url::parse(request["url"].as_str().expect("a URL")).expect("a URL");
            assert_eq!(
                url.origin(),
                self.base.origin(),
                "{request} left the origin"
            );
        }
        let sockets = observed["websockets"].as_array().expect("websockets");
        for socket in sockets {
            let url = Url::parse(socket.as_str().expect("a URL")).expect("a URL");
            assert_eq!(url.scheme(), "ws", "{socket}");
            assert_eq!(url.path(), "/graphql/ws", "{socket}");
            assert_eq!(
                (url.host_str(), url.port()),
                (self.base.host_str(), self.base.port()),
                "{socket} is not this server"
            );
        }
    }
}

/// The operation names of the page's `POST /graphql` requests so far, in order.
async fn graphql_operations(page: &mut Page) -> Vec<String> {
    let observed = page.step(json!({ "step": "observed" })).await;
    let requests = observed["requests"].as_array().expect("requests");
    requests
        .iter()
        .filter(|r| {
            r["method"] == "POST" && r["url"].as_str().is_some_and(|u| u.ends_with("/graphql"))
        })
        .map(|r| r["operation"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// A secret's state, version and its dependents' states, over the API.
async fn stands(app: &TestApp, name: &str) -> (Value, Vec<String>) {
    let answer = app.admin(SECRET_STATE, json!({ "name": name })).await;
    let data = data(&answer);
    let dependents = data["dependents"]
        .as_array()
        .expect("dependents")
        .iter()
        .map(|d| d["state"].as_str().unwrap_or_default().to_owned())
        .collect();
    (data["secret"].clone(), dependents)
}

/// Create, update (the stale pipeline named, then redeployed by the console) and a
/// `VERSION_CONFLICT` when someone else updated first: each checked over the API.
async fn an_admin_creates_and_updates_secrets(store: Store) {
    let app = TestApp::spawn(store).await;
    let pipeline = format!("nightly-etl-{}", short_id());
    app.create_secret("DB_URL", "postgres://one").await;
    app.deploy_pipeline(&pipeline, &[("DB_URL", "db.url")])
        .await;

    let mut session = Session::open(&app, "/console").await;
    session.sign_in(&app.admin_token, "DB_URL").await;
    let page = &mut session.page;
    assert_eq!(page.rows().await, ["DB_URL"]);
    let summary = page.expect_text(row("DB_URL"), "1 up to date").await;
    assert!(summary.contains("0 stale · 0 broken"), "{summary}");
    page.expect_text(whole_page(), "Live updates on").await;
    // Who signed in, then one request for the page of secrets with their dependents.
    assert_eq!(
        graphql_operations(page).await,
        ["ConsoleViewer", "ConsoleSecrets"]
    );
    page.assert_accessible("the list").await;

    // Create → Name, Value, Description → Save.
    let value = session.typed(&format!("console-value-{}", short_id()));
    let page = &mut session.page;
    page.click("Create").await;
    let create = dialog("Create secret");
    let focus = page.step(json!({ "step": "focus" })).await;
    page.assert_accessible("the create dialog").await;
    assert_eq!(
        focus["label"], "Name",
        "the dialog takes the focus: {focus}"
    );
    page.fill(create.clone(), "Name", "API_KEY").await;
    page.fill(create.clone(), "Value", &value).await;
    page.fill(create.clone(), "Description", "the partner API")
        .await;
    page.click_in(create, "Save").await;
    page.expect_closed("Create secret").await;
    page.expect_text(row("API_KEY"), "Active").await;
    let (secret, _) = stands(&app, "API_KEY").await;
    assert_eq!(secret["currentVersion"], 1, "{secret}");
    assert_eq!(secret["description"], "the partner API", "{secret}");
    assert_eq!(app.reveal("API_KEY").await, value);

    // A second create of the name: the code's message, in the dialog.
    page.click("Create").await;
    let create = dialog("Create secret");
    page.fill(create.clone(), "Name", "API_KEY").await;
    page.fill(create.clone(), "Value", "x").await;
    page.click_in(create.clone(), "Save").await;
    page.expect_text(create, "already exists").await;
    page.step(json!({ "step": "press", "key": "Escape" })).await;
    page.expect_closed("Create secret").await;

    // Edit → new value → Update: the stale pipeline named, then Redeploy stale (1).
    let new_value = session.typed(&format!("postgres://two-{}", short_id()));
    let page = &mut session.page;
    page.screenshot("console-list").await;
    page.click("Edit DB_URL").await;
    let update = dialog("Update DB_URL");
    page.expect_text(
        update.clone(),
        "keep the old value until they are redeployed",
    )
    .await;
    page.fill(update.clone(), "Value", &new_value).await;
    page.click_in(update, "Update").await;
    page.expect_closed("Update DB_URL").await;
    let stale = region("DB_URL is now at version 2");
    let warning = page.expect_text(stale.clone(), &pipeline).await;
    page.screenshot("console-stale").await;
    assert!(warning.contains("stale"), "{warning}");
    assert_eq!(stands(&app, "DB_URL").await.1, ["STALE"]);
    page.click_in(stale.clone(), "Redeploy stale (1)").await;
    page.expect_text(stale, &format!("{pipeline} (db.url): up to date"))
        .await;
    let (secret, dependents) = stands(&app, "DB_URL").await;
    assert_eq!(secret["currentVersion"], 2, "{secret}");
    assert_eq!(dependents, ["UP_TO_DATE"]);
    assert_eq!(app.reveal("DB_URL").await, new_value);

    // Someone else updates while the dialog is open: VERSION_CONFLICT, who, and Reload.
    let mine = session.typed(&format!("postgres://mine-{}", short_id()));
    let page = &mut session.page;
    page.click("Edit DB_URL").await;
    let update = dialog("Update DB_URL");
    page.fill(update.clone(), "Value", &mine).await;
    let theirs = app
        .admin(
            UPDATE,
            json!({ "name": "DB_URL", "value": "postgres://theirs" }),
        )
        .await;
    assert_eq!(data(&theirs)["updateSecret"]["secret"]["currentVersion"], 3);
    page.click_in(update.clone(), "Update").await;
    page.expect_text(update.clone(), "Someone else changed DB_URL")
        .await;
    page.expect_text(update.clone(), "now at version 3").await;
    assert!(!page.enabled(update.clone(), "Update").await);
    assert_eq!(app.reveal("DB_URL").await, "postgres://theirs");
    page.click_in(update.clone(), "Reload").await;
    page.expect_text(update.clone(), "becomes version 4").await;
    page.click_in(update, "Update").await;
    page.expect_closed("Update DB_URL").await;
    page.expect_text(region("DB_URL is now at version 4"), &pipeline)
        .await;
    assert_eq!(app.reveal("DB_URL").await, mine);

    // Every live update came over one WebSocket.
    let observed = page.step(json!({ "step": "observed" })).await;
    assert_eq!(
        observed["websockets"].as_array().map(Vec::len),
        Some(1),
        "{observed:#}"
    );

    // Sign out: the page asks for a token again.
    page.click("Sign out").await;
    page.expect_text(whole_page(), "API token").await;
    session.assert_safe_and_close().await;
}

/// Delete (the impact first; with a deployed dependent, a typed confirmation), restore and
/// purge from the `Deleted` filter, disable / enable on the detail view, and changes
/// made through the API showing in the open page without a reload.
async fn an_admin_deletes_restores_and_disables_secrets(store: Store) {
    let app = TestApp::spawn(store).await;
    let pipeline = format!("loader-{}", short_id());
    app.create_secret("DB_URL", "postgres://one").await;
    app.create_secret("UNUSED", "old").await;
    app.create_secret("LIVE_KEY", "v1").await;
    app.deploy_pipeline(&pipeline, &[("DB_URL", "db.url")])
        .await;

    // A deep link: the page, which asks for a token first.
    let mut session = Session::open(&app, "/console/secrets/DB_URL").await;
    session.sign_in(&app.admin_token, "Dependents").await;
    let page = &mut session.page;
    page.expect_text(whole_page(), &pipeline).await;
    page.step(json!({ "step": "click", "role": "link", "name": "← All secrets" }))
        .await;
    assert_eq!(page.rows().await, ["DB_URL", "LIVE_KEY", "UNUSED"]);

    // Live: an update made over the API shows in the row, then a new secret appears.
    page.expect_text(whole_page(), "Live updates on").await;
    let mut shown = false;
    for version in 2..2 + LIVE_TRIES {
        app.admin(
            UPDATE,
            json!({ "name": "LIVE_KEY", "value": format!("v{version}") }),
        )
        .await;
        let cells = format!("Active\t{version}\t");
        if page.shows_within(row("LIVE_KEY"), &cells, LIVE_WAIT).await {
            shown = true;
            break;
        }
    }
    assert!(shown, "no API update showed in the open page");
    app.create_secret("NEW_FROM_API", "x").await;
    page.expect_text(row("NEW_FROM_API"), "Active").await;

    // Delete with no dependent: the dialog says so, Delete confirms.
    page.click("Delete UNUSED").await;
    let delete = dialog("Delete UNUSED");
    page.expect_text(
        delete.clone(),
        "No deployed pipeline or integration uses UNUSED",
    )
    .await;
    page.click_in(delete, "Delete").await;
    page.expect_closed("Delete UNUSED").await;
    assert_eq!(stands(&app, "UNUSED").await.0["state"], "DELETED");

    // Delete with a deployed dependent: the impact, then only the typed name sends force.
    page.click("Delete DB_URL").await;
    let delete = dialog("Delete DB_URL");
    let impact = page.expect_text(delete.clone(), &pipeline).await;
    page.screenshot("console-delete").await;
    page.assert_accessible("the delete dialog with its impact")
        .await;
    assert!(impact.contains("breaks"), "{impact}");
    assert!(!page.enabled(delete.clone(), "Delete").await);
    page.fill(delete.clone(), "Type DB_URL to confirm", "DB_UR")
        .await;
    assert!(!page.enabled(delete.clone(), "Delete").await);
    assert_eq!(stands(&app, "DB_URL").await.0["state"], "ACTIVE");
    page.fill(delete.clone(), "Type DB_URL to confirm", "DB_URL")
        .await;
    assert!(page.enabled(delete.clone(), "Delete").await);
    page.click_in(delete, "Delete").await;
    page.expect_closed("Delete DB_URL").await;
    let (secret, dependents) = stands(&app, "DB_URL").await;
    assert_eq!(secret["state"], "DELETED", "{secret}");
    assert_eq!(dependents, ["BROKEN"]);

    // The Deleted filter lists both; Restore one, Purge the other.
    page.step(json!({ "step": "select", "label": "State", "option": "Deleted" }))
        .await;
    page.expect_text(row("UNUSED"), "Deleted").await;
    assert_eq!(page.rows().await, ["DB_URL", "UNUSED"]);
    page.click_in(row("DB_URL"), "Restore").await;
    page.expect_gone(json!({ "table": "Secrets" }), "DB_URL")
        .await;
    assert_eq!(stands(&app, "DB_URL").await.0["state"], "ACTIVE");
    page.click_in(row("UNUSED"), "Purge").await;
    page.click_in(dialog("Purge UNUSED"), "Purge").await;
    page.expect_closed("Purge UNUSED").await;
    assert!(stands(&app, "UNUSED").await.0.is_null());

    // The detail view, opened from the name: Disable (with a reason), then Enable.
    page.step(json!({ "step": "select", "label": "State", "option": "Active and disabled" }))
        .await;
    page.step(json!({ "step": "click", "role": "link", "name": "DB_URL", "exact": true, "scope": row("DB_URL") }))
        .await;
    let detail = page.expect_text(whole_page(), "Audit trail").await;
    page.assert_accessible("the detail view").await;
    assert!(
        detail.contains("secret.delete") && detail.contains("secret.restore"),
        "{detail}"
    );
    assert!(detail.contains(&pipeline), "{detail}");
    page.click("Disable").await;
    let disable = dialog("Disable DB_URL");
    page.fill(disable.clone(), "Reason", "scream test").await;
    page.click_in(disable, "Disable").await;
    page.expect_closed("Disable DB_URL").await;
    page.expect_text(whole_page(), "scream test").await;
    assert_eq!(stands(&app, "DB_URL").await.0["state"], "DISABLED");
    page.click("Enable").await;
    page.step(json!({ "step": "waitText", "text": "Disable", "scope": whole_page() }))
        .await;
    let enabled = page
        .shows_within(whole_page(), "secret.enable", Duration::from_secs(30))
        .await;
    assert!(enabled, "the audit trail does not show the enable");
    assert_eq!(stands(&app, "DB_URL").await.0["state"], "ACTIVE");

    // A reload forgets the token.
    page.step(json!({ "step": "reload" })).await;
    page.expect_text(whole_page(), "API token").await;
    session.assert_safe_and_close().await;
}

/// Relay paging through more secrets than a page holds, search by name, and each page
/// costing one request however many dependents its secrets have.
async fn an_admin_pages_and_searches_secrets(store: Store) {
    let app = TestApp::spawn(store).await;
    let names: Vec<String> = (0..55).map(|i| format!("PAGED_{i:02}")).collect();
    let creates = names
        .iter()
        .map(|name| {
            (
                CREATE_SECRET,
                json!({ "input": { "name": name, "value": "x" } }),
            )
        })
        .collect();
    app.admin_batches(creates).await;
    let references: Vec<(&str, &str)> = names[..20].iter().map(|n| (n.as_str(), "f")).collect();
    app.deploy_pipeline(&format!("wide-{}", short_id()), &references)
        .await;

    let mut session = Session::open(&app, "/console").await;
    session
        .sign_in(&app.admin_token, "Page 1 · 55 in all")
        .await;
    let page = &mut session.page;
    let first = page.rows().await;
    assert_eq!(first, names[..50], "the first page, by name");
    page.expect_text(row("PAGED_07"), "1 up to date · 0 stale · 0 broken")
        .await;
    let table = json!({ "table": "Secrets" });
    page.click("Next page").await;
    page.expect_text(table.clone(), "PAGED_50").await;
    assert_eq!(page.rows().await, names[50..]);
    page.expect_text(whole_page(), "Page 2 · 55 in all").await;
    assert!(!page.enabled(whole_page(), "Next page").await);
    page.click("Previous page").await;
    page.expect_text(table.clone(), "PAGED_00").await;
    assert_eq!(page.rows().await, names[..50]);

    page.fill(whole_page(), "Search by name", "paged_5").await;
    page.expect_gone(table, "PAGED_00").await;
    assert_eq!(page.rows().await, names[50..]);
    page.expect_text(whole_page(), "5 in all").await;

    // Sign-in, then one request per page shown (the second and the first again, then the
    // search): never one per row.
    let operations = graphql_operations(page).await;
    let (viewer, lists) = operations.split_first().expect("requests");
    assert_eq!(viewer, "ConsoleViewer");
    assert!(
        lists.iter().all(|op| op == "ConsoleSecrets"),
        "{operations:?}"
    );
    assert!(lists.len() <= 5, "{operations:?}");
    session.assert_safe_and_close().await;
}

/// Members and viewers get the no-access page, which names no secret; a runtime token is
/// refused; a wrong token is told so.
async fn only_admins_see_secrets(store: Store) {
    let app = TestApp::spawn(store).await;
    let secret = format!("HIDDEN_{}", short_id().to_uppercase());
    app.create_secret(&secret, "x").await;
    let mut session = Session::open(&app, "/console").await;
    session.page.expect_text(whole_page(), "API token").await;
    session.page.assert_accessible("the sign-in page").await;
    for role in ["MEMBER", "VIEWER"] {
        let token = app.new_principal_token(role).await;
        session.sign_in(&token, "No access to secrets").await;
        session.page.assert_accessible("the no-access page").await;
        let html = session.page.step(json!({ "step": "html" })).await;
        let html = html.as_str().expect("the DOM");
        assert!(!html.contains(&secret), "{role} sees {secret}:\n{html}");
        session.page.click("Sign out").await;
        session.page.expect_text(whole_page(), "API token").await;
    }

    let runtime = app.new_principal_token("RUNTIME").await;
    let refused = session
        .sign_in(&runtime, "runtime tokens cannot sign in")
        .await;
    assert!(!refused.contains("Sign out"), "{refused}");
    let wrong = format!("srt_{}", short_id());
    session.sign_in(&wrong, "not valid").await;
    let html = session.page.step(json!({ "step": "html" })).await;
    assert!(!html.as_str().unwrap_or_default().contains(&secret));
    session.assert_safe_and_close().await;
}

both_stores!(
    an_admin_creates_and_updates_secrets,
    an_admin_pages_and_searches_secrets,
    an_admin_deletes_restores_and_disables_secrets,
    only_admins_see_secrets,
);
