//! The operator's page in a real browser: headless Chromium (Debian's
//! `chromium`, driven over the DevTools protocol by
//! `osproxy_test_support::Browser`) against running `serve --etcd`
//! instances on real etcd. The page lists a published directive, its
//! countdown decreases, an instance's rejection appears, a target carrying
//! `<script>` renders as text, and with a token the page asks for it.
//!
//! Through the page an operator adds, extends and ends a directive, in memory
//! and in etcd (prefix layout), with previews showing the decoder's slug,
//! a confirmation for capture and a compare-and-swap conflict.
//!
//! Set `OSPROXY_PAGE_SCREENSHOT=docs/page.png` to keep the screenshot the
//! etcd authoring test takes (that is how the README's picture is made).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::*;
use osproxy_test_support::{Browser, Tab};
use serde_json::Value;

/// The tenant target the page must show as text (ids cannot carry `<`;
/// targets, which come from etcd as well, can).
const HOSTILE_TENANT: &str = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>";

fn body(ttl_secs: u64) -> String {
    serde_json::json!({"directives": [
        {"id": "acme-timing", "level": "ShapeTiming", "tenant": "acme", "endpoint": "Search",
         "sample_per_mille": 100, "ttl_secs": ttl_secs},
        {"id": "hostile-target", "level": "Shape", "tenant": HOSTILE_TENANT, "capture": true,
         "ttl_secs": 900},
    ]})
    .to_string()
}

/// Text of the cell `class` in the row of directive `id`, or null.
fn directive_cell(tab: &Tab<'_>, id: &str, class: &str) -> Value {
    let id = serde_json::to_string(id).unwrap();
    tab.eval(&format!(
        "(() => {{ for (const tr of document.querySelectorAll('#directives tbody tr')) {{
            if (tr.querySelector('td.id').textContent === {id}) return tr.querySelector('td.{class}').textContent; }}
          return null; }})()"
    ))
}

/// Text of the cell `class` in the row of instance `id`, or null.
fn instance_cell(tab: &Tab<'_>, id: &str, class: &str) -> Value {
    let id = serde_json::to_string(id).unwrap();
    tab.eval(&format!(
        "(() => {{ for (const tr of document.querySelectorAll('#instances tbody tr')) {{
            if (tr.querySelector('td.instance').textContent === {id}) return tr.querySelector('td.{class}').textContent; }}
          return null; }})()"
    ))
}

/// Seconds in a countdown such as `9m58s`, `1h2m`, `44s`.
fn seconds(text: &str) -> u64 {
    let mut total = 0;
    let mut n = 0;
    for c in text.chars() {
        match c {
            '0'..='9' => n = n * 10 + u64::from(c.to_digit(10).unwrap()),
            'd' => (total, n) = (total + n * 86_400, 0),
            'h' => (total, n) = (total + n * 3_600, 0),
            'm' => (total, n) = (total + n * 60, 0),
            's' => (total, n) = (total + n, 0),
            _ => panic!("not a countdown: {text:?}"),
        }
    }
    total
}

fn serve_instance(
    cluster: &EtcdCluster,
    key: &str,
    status: &str,
    id: &str,
    extra: &[&str],
) -> Serve {
    let endpoints = endpoints_arg(cluster);
    let mut args = vec![
        "--etcd",
        "--endpoints",
        &endpoints,
        "--key",
        key,
        "--instance-id",
        id,
        "--status-prefix",
        status,
    ];
    args.extend_from_slice(extra);
    Serve::start(&args)
}

#[test]
fn the_page_shows_directives_counting_down_and_an_instance_rejecting() {
    let cluster = shared_cluster();
    let key = unique_key("page");
    let status = format!("{}/", unique_key("page-status"));
    let a = serve_instance(cluster, &key, &status, "proxy-a", &[]);
    let b = serve_instance(cluster, &key, &status, "proxy-b", &["--max-lifetime", "1h"]);
    let (code, answer) = http_post(&a.at("/admin/directives"), body(600).into_bytes(), None);
    assert_eq!(code, 200, "{answer}");

    let browser = Browser::launch();
    let tab = browser.open(&a.at("/ui"));
    tab.wait_for(
        "the page lists the published directive",
        "[...document.querySelectorAll('#directives td.id')].map(e => e.textContent).join(',') === 'acme-timing,hostile-target'",
    );
    assert_eq!(
        directive_cell(&tab, "acme-timing", "targets"),
        "tenant=acme, endpoint=Search"
    );
    assert_eq!(directive_cell(&tab, "acme-timing", "sample"), "100");
    assert_eq!(directive_cell(&tab, "hostile-target", "flags"), "capture");

    // The hostile target is text: no element, no script ran.
    assert_eq!(
        directive_cell(&tab, "hostile-target", "targets"),
        Value::String(format!("tenant={HOSTILE_TENANT}"))
    );
    assert_eq!(
        tab.eval(
            "document.querySelectorAll('#directives tbody img, #directives tbody script').length"
        ),
        0
    );
    assert_eq!(tab.eval("typeof window.pwned"), "undefined");
    assert_eq!(
        tab.eval("document.scripts.length"),
        4,
        "only the page's four files"
    );
    // The server-rendered HTML escaped it too.
    let (_, html) = http_get(&a.at("/ui"));
    assert!(html.contains("tenant=&lt;script&gt;window.pwned=1&lt;/script&gt;"));
    assert!(!html.contains("<img src=x"));

    // The countdown ticks without a reload.
    let first = directive_cell(&tab, "acme-timing", "remaining");
    let first_secs = seconds(first.as_str().unwrap());
    assert!((590..=600).contains(&first_secs), "{first}");
    let first_json = serde_json::to_string(&first).unwrap();
    tab.wait_for(
        "the countdown moves",
        &format!(
            "(() => {{ for (const tr of document.querySelectorAll('#directives tbody tr'))
                if (tr.querySelector('td.id').textContent === 'acme-timing')
                  return tr.querySelector('td.remaining').textContent !== {first_json};
              return false; }})()"
        ),
    );
    let later = directive_cell(&tab, "acme-timing", "remaining");
    assert!(
        seconds(later.as_str().unwrap()) < first_secs,
        "{first} then {later}"
    );

    // Both instances report; then proxy-b rejects a set beyond its cap.
    tab.wait_for(
        "both instances are current",
        "[...document.querySelectorAll('#instances tbody tr')].filter(tr => tr.querySelector('td.state').textContent === 'current').length === 2",
    );
    let (code, answer) = http_post(&a.at("/admin/directives"), body(7_200).into_bytes(), None);
    assert_eq!(code, 200, "{answer}");
    tab.wait_for(
        "proxy-b's rejection appears",
        "[...document.querySelectorAll('#instances tbody tr')].some(tr => tr.querySelector('td.instance').textContent === 'proxy-b' && tr.querySelector('td.state').textContent === 'rejecting')",
    );
    let rejected = instance_cell(&tab, "proxy-b", "rejected");
    assert!(
        rejected
            .as_str()
            .unwrap()
            .starts_with("lifetime_too_long at revision "),
        "{rejected}"
    );
    assert_eq!(instance_cell(&tab, "proxy-a", "state"), "current");
    assert_eq!(instance_cell(&tab, "proxy-a", "rejected"), "-");
    tab.wait_for(
        "the new lifetime shows",
        "(() => { const c = [...document.querySelectorAll('#directives tbody tr')].find(tr => tr.querySelector('td.id').textContent === 'acme-timing'); return c && c.querySelector('td.remaining').textContent.startsWith('1h59m'); })()",
    );

    tab.wait_for(
        "the history lists both publishes",
        "document.querySelectorAll('#history tbody tr').length >= 2",
    );
    let png = tab.screenshot_png();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    drop(b);
}

#[test]
fn with_a_token_the_page_asks_for_it_and_then_shows_the_data() {
    let serve = Serve::start_with_env(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("OSPROXY_ADMIN_TOKEN", "s3cret-page-token-0123456789abcdef")],
    );
    let one = r#"{"directives":[{"id":"token-page","level":"Shape","ttl_secs":300}]}"#;
    let (code, _) = block_post_with_token(
        &serve.at("/admin/directives"),
        one,
        "s3cret-page-token-0123456789abcdef",
    );
    assert_eq!(code, 200);

    let browser = Browser::launch();
    let tab = browser.open(&serve.at("/ui"));
    tab.wait_for(
        "the page asks for the token",
        "!document.getElementById('auth').hidden && document.getElementById('data').hidden",
    );
    assert_eq!(
        tab.eval("document.querySelectorAll('#directives tbody tr').length"),
        0
    );
    tab.eval("document.getElementById('token').value = 'wrong'");
    tab.click("#use-token");
    tab.wait_for(
        "a wrong token is refused",
        "document.getElementById('auth-error').textContent === 'the token was refused'",
    );
    tab.eval("document.getElementById('token').value = 's3cret-page-token-0123456789abcdef'");
    tab.click("#use-token");
    tab.wait_for(
        "the data shows with the token",
        "document.getElementById('auth').hidden && [...document.querySelectorAll('#directives td.id')].some(e => e.textContent === 'token-page')",
    );
    assert_eq!(tab.eval("document.cookie"), "", "the token is no cookie");

    // Authoring sends the token too; the write names its author.
    choose(&tab, "token-page");
    fill(&tab, &[("edit-reason", "done with it")]);
    preview_ok(&tab, "#end-preview");
    tab.click("#author-write");
    let ended = author_outcome(&tab, "ended token-page at revision ");
    assert!(ended.ends_with("(author admin)"), "{ended}");
}

/// A POST with the bearer token (the common helper sends none).
fn block_post_with_token(url: &str, body: &str, token: &str) -> (u16, String) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let resp = json_client()
                .post(url)
                .bearer_auth(token)
                .body(body.to_owned())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        })
}

/// The reason recorded with the first publish: an etcd-sourced field that
/// can carry `<` (authors cannot).
const HOSTILE_REASON: &str = "<script>window.pwned=3</script> incident 42";

/// Publishes `ids` (10 min each) with a note into the single-key `key`;
/// returns the revision written and the canonical set (absolute expiries).
fn publish_noted(
    cluster: &EtcdCluster,
    key: &str,
    ids: &[&str],
    author: &str,
    reason: &str,
) -> (i64, Value) {
    use std::sync::Arc;

    use osproxy_core::SystemClock;
    use osproxy_etcd::config::ConnectionConfig;
    use osproxy_etcd::{Layout, Publisher};
    use osproxy_observe::{decode_directive_set, PublishNote};

    let body = set_body(ids, 600);
    let set = decode_directive_set(body.as_bytes(), &SystemClock).unwrap();
    let note = PublishNote::new()
        .with_author(author)
        .unwrap()
        .with_reason(reason)
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let publisher = Publisher::connect(
                ConnectionConfig::new(&cluster.endpoints()),
                Layout::Key(key.to_owned()),
                Arc::new(SystemClock),
            )
            .await
            .unwrap();
            let revision = publisher.publish_noted(&set, None, &note).await.unwrap();
            (revision, osproxy_observe::encode::to_value(&set))
        })
}

/// The ids the page lists as applied, comma-joined.
const LISTED_IDS: &str =
    "[...document.querySelectorAll('#directives td.id')].map(e => e.textContent).join(',')";

/// Text of the cell `class` in the history row of `revision`, or null.
fn history_cell(tab: &Tab<'_>, revision: i64, class: &str) -> Value {
    tab.eval(&format!(
        "(() => {{ for (const tr of document.querySelectorAll('#history tbody tr'))
            if (tr.querySelector('td.revision').textContent === '{revision}') return tr.querySelector('td.{class}').textContent;
          return null; }})()"
    ))
}

#[test]
fn the_history_shows_diffs_and_a_confirmed_rollback_restores_the_previous_set() {
    let cluster = shared_cluster();
    let key = unique_key("page-history");
    let status = format!("{}/", unique_key("page-history-status"));
    let serve = serve_instance(cluster, &key, &status, "proxy-h", &[]);
    let (r1, set_r1) = publish_noted(
        cluster,
        &key,
        &["first-a", "first-b"],
        "alice",
        HOSTILE_REASON,
    );
    let (r2, _) = publish_noted(cluster, &key, &["second"], "bob", "swap for the test");

    let browser = Browser::launch();
    let tab = browser.open(&serve.at("/ui"));
    tab.wait_for("the live set shows", &format!("{LISTED_IDS} === 'second'"));
    tab.wait_for(
        "both revisions are listed",
        &format!("document.querySelectorAll('#history tbody tr').length >= 2 && document.querySelector('#history tbody td.revision').textContent === '{r2}'"),
    );
    assert_eq!(history_cell(&tab, r2, "reason"), "swap for the test");
    let who = history_cell(&tab, r2, "who");
    assert!(who.as_str().unwrap().starts_with("bob, 20"), "{who}");
    assert_eq!(
        history_cell(&tab, r2, "diff"),
        "+ second\n- first-a\n- first-b"
    );
    assert_eq!(history_cell(&tab, r1, "set"), "first-a, first-b");
    // The hostile reason is text.
    assert_eq!(history_cell(&tab, r1, "reason"), HOSTILE_REASON);
    assert_eq!(tab.eval("typeof window.pwned"), "undefined");
    assert_eq!(
        tab.eval("document.querySelectorAll('#history tbody script').length"),
        0
    );

    // A rollback asked for, then overtaken by another publish: the
    // compare-and-swap refuses it and the page says so; nothing is written.
    tab.click(&format!("#history button.rollback[data-revision='{r1}']"));
    tab.wait_for(
        "the confirmation shows",
        "!document.getElementById('confirm').hidden",
    );
    let question = tab.eval("document.getElementById('confirm-text').textContent");
    assert!(
        question
            .as_str()
            .unwrap()
            .contains(&format!("over live revision {r2}")),
        "{question}"
    );
    let (r3, _) = publish_noted(cluster, &key, &["third"], "carol", "overtakes the rollback");
    tab.wait_for("the new set shows", &format!("{LISTED_IDS} === 'third'"));
    tab.click("#confirm-yes");
    let outcome = tab.wait_for(
        "the conflict shows",
        "(() => { const t = document.getElementById('rollback-outcome').textContent; return t.startsWith('conflict') ? t : ''; })()",
    );
    assert!(
        outcome.as_str().unwrap().contains("nothing was written"),
        "{outcome}"
    );
    assert_eq!(
        tab.eval("document.getElementById('rollback-outcome').className"),
        "outcome-error"
    );
    assert_eq!(tab.eval(LISTED_IDS), "third");

    // Asked again over the new live revision, confirmed: the set as of r1
    // is back, with its expiries, and history records who did it.
    tab.wait_for(
        "the history is reloaded",
        &format!("document.querySelector('#history tbody td.revision').textContent === '{r3}'"),
    );
    tab.click(&format!("#history button.rollback[data-revision='{r1}']"));
    tab.wait_for(
        "the confirmation shows",
        "!document.getElementById('confirm').hidden",
    );
    tab.click("#confirm-yes");
    let outcome = tab.wait_for(
        "the rollback succeeds",
        "(() => { const t = document.getElementById('rollback-outcome').textContent; return t.startsWith('rolled back') ? t : ''; })()",
    );
    assert!(
        outcome
            .as_str()
            .unwrap()
            .starts_with(&format!("rolled back to revision {r1}: wrote revision ")),
        "{outcome}"
    );
    tab.wait_for(
        "the previous set shows again",
        &format!("{LISTED_IDS} === 'first-a,first-b'"),
    );
    let r4: i64 = outcome
        .as_str()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    tab.wait_for(
        "the rollback is listed",
        &format!("document.querySelector('#history tbody td.revision').textContent === '{r4}'"),
    );
    assert_eq!(
        history_cell(&tab, r4, "reason"),
        format!("rollback to {r1}")
    );
    assert!(history_cell(&tab, r4, "who")
        .as_str()
        .unwrap()
        .starts_with("loopback-unauthenticated, "));
    assert_eq!(
        history_cell(&tab, r4, "diff"),
        "+ first-a\n+ first-b\n- third"
    );
    // The expiries are the ones published at r1, not new ones.
    let (_, admin) = http_get(&serve.at("/admin/directives"));
    let admin: Value = serde_json::from_str(&admin).unwrap();
    assert_eq!(admin["directives"], set_r1["directives"], "{admin}");
}

/// Sets the authoring panel's inputs: `(element id, value)`; a checkbox
/// takes `"true"` or `"false"`.
fn fill(tab: &Tab<'_>, fields: &[(&str, &str)]) {
    for (id, value) in fields {
        let id = serde_json::to_string(id).unwrap();
        let value = serde_json::to_string(value).unwrap();
        let set = tab.eval(&format!(
            "(() => {{ const e = document.getElementById({id}); if (!e) return false;
                if (e.type === 'checkbox') e.checked = {value} === 'true'; else e.value = {value};
                return e.type === 'checkbox' || e.value === {value}; }})()"
        ));
        assert_eq!(set, Value::Bool(true), "cannot set #{id} to {value}");
    }
}

/// Waits until the authoring outcome line starts with `prefix`; returns it.
fn author_outcome(tab: &Tab<'_>, prefix: &str) -> String {
    let p = serde_json::to_string(prefix).unwrap();
    let v = tab.wait_for(
        &format!("the authoring outcome starts with {prefix}"),
        &format!(
            "(() => {{ const t = document.getElementById('author-outcome').textContent;
                return t.startsWith({p}) ? t : ''; }})()"
        ),
    );
    v.as_str().unwrap().to_owned()
}

/// Waits until the page shows the revision a write reported (`at revision
/// N` in the outcome): a preview compares against what the page shows.
fn wait_shown(tab: &Tab<'_>, outcome: &str) {
    let (_, after) = outcome.split_once("at revision ").unwrap();
    let revision: u64 = after.split(' ').next().unwrap().parse().unwrap();
    tab.wait_for(
        &format!("the page shows revision {revision}"),
        &format!(
            "Number(document.getElementById('author-section').dataset.revision) >= {revision}"
        ),
    );
}

/// Chooses `id` in the extend/end panel once the page lists it.
fn choose(tab: &Tab<'_>, id: &str) {
    let q = serde_json::to_string(id).unwrap();
    tab.wait_for(
        &format!("{id} can be chosen"),
        &format!("[...document.getElementById('edit-id').options].some(o => o.value === {q})"),
    );
    fill(tab, &[("edit-id", id)]);
}

/// Previews the add the form describes, expecting it to be valid.
fn preview_ok(tab: &Tab<'_>, button: &str) {
    tab.click(button);
    author_outcome(tab, "preview: valid");
    assert_eq!(
        tab.eval("document.getElementById('author-review').hidden"),
        false
    );
}

/// The ids of the live set as `GET /admin/directives` answers.
fn live_ids(serve: &Serve) -> Vec<String> {
    let (code, body) = http_get(&serve.at("/admin/directives"));
    assert_eq!(code, 200, "{body}");
    ids_of(&serde_json::from_str(&body).unwrap())
}

/// Adds, extends and ends a directive through the page against `serve`
/// (capped at a 1 h lifetime); previews show rejections inline and write
/// nothing; a capture needs confirming; a write over a set that moved after
/// the preview is a conflict. Returns the tab for more checks.
fn author_through_the_page<'b>(browser: &'b Browser, serve: &Serve, id: &str) -> Tab<'b> {
    let tab = browser.open(&serve.at("/"));
    tab.wait_for(
        "/ leads to the page and it is live",
        "location.pathname === '/ui' && document.getElementById('status').textContent.startsWith('live')",
    );
    let before = live_ids(serve);

    // Previews: the instance's decoder and limits answer, nothing is written.
    fill(
        &tab,
        &[
            ("add-id", id),
            ("add-level", "ShapeTiming"),
            ("add-tenant", "acme"),
            ("add-endpoint", "Search"),
            ("add-sample", "1500"),
            ("add-lifetime", "10m"),
            ("add-budget", "50"),
            ("add-reason", "investigating slow searches"),
        ],
    );
    tab.click("#add-preview");
    let rejected = author_outcome(&tab, "sample_out_of_range: ");
    assert!(!rejected.contains("1500"), "no value echoed: {rejected}");
    assert_eq!(
        tab.eval("document.getElementById('author-review').hidden"),
        true
    );
    fill(&tab, &[("add-sample", "250"), ("add-lifetime", "2h")]);
    tab.click("#add-preview");
    author_outcome(&tab, "lifetime_too_long: ");
    fill(&tab, &[("add-lifetime", "nonsense")]);
    tab.click("#add-preview");
    author_outcome(&tab, "invalid_lifetime: ");
    assert_eq!(live_ids(serve), before, "previews write nothing");

    // Add.
    fill(&tab, &[("add-lifetime", "10m")]);
    preview_ok(&tab, "#add-preview");
    let review = tab.eval("document.getElementById('author-review-text').textContent");
    assert!(
        review
            .as_str()
            .unwrap()
            .starts_with(&format!("Add {id}, expiring ")),
        "{review}"
    );
    assert_eq!(
        tab.eval("document.getElementById('author-ack-label').hidden"),
        true
    );
    tab.click("#author-write");
    let written = author_outcome(&tab, &format!("added {id} at revision "));
    wait_shown(&tab, &written);
    let row = serde_json::to_string(id).unwrap();
    tab.wait_for(
        "the added directive is listed",
        &format!("[...document.querySelectorAll('#directives td.id')].some(e => e.textContent === {row})"),
    );
    assert_eq!(
        directive_cell(&tab, id, "targets"),
        "tenant=acme, endpoint=Search"
    );
    assert_eq!(directive_cell(&tab, id, "sample"), "250");
    let (_, body) = http_get(&serve.at("/admin/directives"));
    let live: Value = serde_json::from_str(&body).unwrap();
    let added = live["directives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap();
    assert_eq!(added["max_per_sec"], 50, "{added}");
    assert_eq!(added["level"], "ShapeTiming");

    // A capture asks for a confirmation, and the instance insists on it.
    let capture = format!("{id}-capture");
    fill(
        &tab,
        &[
            ("add-id", &capture),
            ("add-tenant", ""),
            ("add-endpoint", ""),
            ("add-sample", ""),
            ("add-budget", ""),
            ("add-capture", "true"),
        ],
    );
    preview_ok(&tab, "#add-preview");
    assert_eq!(
        tab.eval("document.getElementById('author-ack-label').hidden"),
        false
    );
    let ack = tab.eval("document.getElementById('author-ack-text').textContent");
    assert!(ack.as_str().unwrap().ends_with("capture"), "{ack}");
    tab.click("#author-write");
    author_outcome(&tab, "confirmation_required: ");
    preview_ok(&tab, "#add-preview");
    fill(&tab, &[("author-ack", "true")]);
    tab.click("#author-write");
    let written = author_outcome(&tab, &format!("added {capture} at revision "));
    wait_shown(&tab, &written);

    // Extend.
    choose(&tab, id);
    fill(
        &tab,
        &[("edit-lifetime", "45m"), ("edit-reason", "needs longer")],
    );
    preview_ok(&tab, "#extend-preview");
    tab.click("#author-write");
    let written = author_outcome(&tab, &format!("extended {id} to "));
    wait_shown(&tab, &written);
    tab.wait_for(
        "the new lifetime shows",
        &format!(
            "(() => {{ const tr = [...document.querySelectorAll('#directives tbody tr')].find(tr => tr.querySelector('td.id').textContent === {row});
                return tr && tr.querySelector('td.remaining').textContent.startsWith('44m'); }})()"
        ),
    );

    // End now: a reason is required.
    choose(&tab, &capture);
    fill(&tab, &[("edit-reason", "")]);
    preview_ok(&tab, "#end-preview");
    tab.click("#author-write");
    author_outcome(&tab, "reason_required: ");
    fill(&tab, &[("edit-reason", "capture no longer needed")]);
    preview_ok(&tab, "#end-preview");
    tab.click("#author-write");
    let written = author_outcome(&tab, &format!("ended {capture} at revision "));
    wait_shown(&tab, &written);
    let gone = serde_json::to_string(&capture).unwrap();
    tab.wait_for(
        "the ended directive is gone",
        &format!("![...document.querySelectorAll('#directives td.id')].some(e => e.textContent === {gone})"),
    );
    assert!(!live_ids(serve).contains(&capture));

    // A conflict: the directive changes between the preview and the write.
    choose(&tab, id);
    preview_ok(&tab, "#end-preview");
    let (_, body) = http_get(&serve.at("/admin/directives"));
    let mut set: Value = serde_json::from_str(&body).unwrap();
    for d in set["directives"].as_array_mut().unwrap() {
        if d["id"] == id {
            d["sample_per_mille"] = 500.into();
        }
    }
    let set = serde_json::json!({"directives": set["directives"]});
    let (code, answer) = http_post(
        &serve.at("/admin/directives"),
        set.to_string().into_bytes(),
        None,
    );
    assert_eq!(code, 200, "{answer}");
    tab.click("#author-write");
    let conflict = author_outcome(&tab, "conflict: ");
    assert!(conflict.contains("nothing was written"), "{conflict}");
    assert!(live_ids(serve).contains(&id.to_owned()), "not ended");
    tab
}

#[test]
fn the_page_adds_extends_and_ends_a_directive_in_memory() {
    let serve = Serve::start(&["--max-lifetime", "1h"]);
    let browser = Browser::launch();
    let _tab = author_through_the_page(&browser, &serve, "page-added");
}

#[test]
fn the_page_adds_extends_and_ends_a_directive_in_etcd() {
    let cluster = shared_cluster();
    let prefix = format!("{}/", unique_key("page-author"));
    let status = format!("{}/", unique_key("page-author-status"));
    let endpoints = endpoints_arg(cluster);
    let serve = Serve::start(&[
        "--etcd",
        "--endpoints",
        &endpoints,
        "--prefix",
        &prefix,
        "--instance-id",
        "proxy-author",
        "--status-prefix",
        &status,
        "--max-lifetime",
        "1h",
    ]);
    let browser = Browser::launch();
    let tab = author_through_the_page(&browser, &serve, "fleet-added");

    // Each write is in etcd's history with its reason and author.
    let (code, body) = http_get(&serve.at("/admin/history?limit=20"));
    assert_eq!(code, 200, "{body}");
    let history: Value = serde_json::from_str(&body).unwrap();
    let reasons: Vec<(&str, &str)> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["reason"].as_str()?, e["author"].as_str()?)))
        .collect();
    for reason in [
        "investigating slow searches",
        "needs longer",
        "capture no longer needed",
    ] {
        assert!(
            reasons.contains(&(reason, "loopback-unauthenticated")),
            "{reason} in {reasons:?}"
        );
    }

    // Per key in the prefix layout: a change to another directive after
    // the page showed its revision does not stop ending this one.
    let shown = tab.eval("Number(document.getElementById('author-section').dataset.revision)");
    choose(&tab, "fleet-added");
    fill(&tab, &[("edit-reason", "per key")]);
    preview_ok(&tab, "#end-preview");
    let (_, body) = http_get(&serve.at("/admin/directives"));
    let mut set: Value = serde_json::from_str(&body).unwrap();
    set["directives"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"id": "unrelated", "level": "Shape", "ttl_secs": 300}));
    let set = serde_json::json!({"directives": set["directives"]});
    let (code, answer) = http_post(
        &serve.at("/admin/directives"),
        set.to_string().into_bytes(),
        None,
    );
    assert_eq!(code, 200, "{answer}");
    let after: Value = serde_json::from_str(&answer).unwrap();
    assert!(after["revision"].as_u64().unwrap() > shown.as_u64().unwrap());
    tab.click("#author-write");
    author_outcome(&tab, "ended fleet-added at revision ");
    tab.wait_for(
        "only the unrelated directive is left",
        &format!("{LISTED_IDS} === 'unrelated'"),
    );

    // The page with the authoring form, a preview under review.
    fill(
        &tab,
        &[
            ("add-id", "acme-search"),
            ("add-capture", "false"),
            ("add-tenant", "acme"),
            ("add-reason", "slow searches for acme"),
        ],
    );
    preview_ok(&tab, "#add-preview");
    let review = tab.eval("document.getElementById('author-review-text').textContent");
    assert!(
        review
            .as_str()
            .unwrap()
            .contains("only if acme-search is unchanged since"),
        "the prefix layout compares per key: {review}"
    );
    let png = tab.screenshot_png();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    if let Some(path) = std::env::var_os("OSPROXY_PAGE_SCREENSHOT") {
        std::fs::write(&path, &png).unwrap();
    }
}

/// A request id the tape must show as text.
const HOSTILE_REQUEST_ID: &str = "<img src=x onerror=window.pwned=4>";

#[test]
fn the_page_shows_the_reference_services_tape_live_newest_first_with_explain() {
    use osproxy_directives::admin::Backend;
    use osproxy_directives::reference_service::{ReferenceOptions, ReferenceService};
    use std::sync::Arc;
    use std::time::Duration;

    const TOKEN: &str = "tape-page-token-0123456789abcdef";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut options = ReferenceOptions::new(Arc::new(osproxy_core::SystemClock));
    options.log = false;
    options.admin.token = Some(TOKEN.into());
    options.refresh_every = Duration::from_millis(20);
    let store = osproxy_observe::InMemoryDirectiveStore::new();
    let service = ReferenceService::new(Backend::InMemory(store), options).unwrap();
    let (base, admin) = rt.block_on(async {
        let mut urls = Vec::new();
        for router in [service.service(), service.admin()] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            urls.push(format!("http://{}", listener.local_addr().unwrap()));
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
        (urls[0].clone(), urls[1].clone())
    });
    let body = r#"{"directives":[{"id":"acme-tape","level":"ShapeTiming","tenant":"acme",
        "ttl_secs":600,"ring_buffer":true}]}"#;
    let (code, answer) = block_post_with_token(&format!("{admin}/admin/directives"), body, TOKEN);
    assert_eq!(code, 200, "{answer}");
    let revision: Value = serde_json::from_str::<Value>(&answer).unwrap()["revision"].clone();
    osproxy_test_support::wait_until(Duration::from_secs(10), "the recorder is on", || {
        service.recorder().is_active()
    });
    let send = |tenant: &str, id: &str| {
        let url = format!("{base}/logs/_search?q=x");
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        rt.block_on(async move {
            let status = reqwest::Client::new()
                .get(url)
                .header("x-tenant", tenant)
                .header("x-request-id", id)
                .header("authorization", "Bearer hunter2")
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        });
    };
    send("acme", HOSTILE_REQUEST_ID);
    send("globex", "globex-1");
    send("acme", "acme-2");

    let browser = Browser::launch();
    let tab = browser.open(&format!("{admin}/ui"));
    tab.eval(&format!(
        "document.getElementById('token').value = '{TOKEN}'"
    ));
    tab.click("#use-token");
    const IDS: &str =
        "[...document.querySelectorAll('#tape td.request-id')].map(e => e.textContent).join('|')";
    tab.wait_for(
        "the tape shows acme's two requests, newest first",
        &format!("{IDS} === 'acme-2|{HOSTILE_REQUEST_ID}'"),
    );
    let cell = |row: usize, class: &str| {
        tab.eval(&format!(
            "document.querySelectorAll('#tape tbody tr')[{row}].querySelector('td.{class}').textContent"
        ))
    };
    assert_eq!(cell(0, "tenant"), "acme");
    assert_eq!(cell(0, "directive"), "acme-tape");
    assert_eq!(cell(0, "revision"), Value::String(revision.to_string()));
    assert_eq!(cell(0, "level"), "ShapeTiming");
    assert_eq!(cell(1, "directive"), "acme-tape");
    // The hostile request id is text; no value of the request is shown.
    assert_eq!(tab.eval("document.querySelectorAll('#tape img').length"), 0);
    assert_eq!(tab.eval("typeof window.pwned"), "undefined");
    assert_eq!(
        tab.eval("document.getElementById('tape').textContent.includes('hunter2')"),
        false
    );
    assert_eq!(
        tab.eval("document.querySelector('#tape a.explain').getAttribute('href')"),
        "/admin/explain?tenant=acme&index=logs&endpoint=Search&request_id=acme-2"
    );

    // Live: a new acme request appears on top without a reload.
    send("acme", "acme-3");
    tab.wait_for(
        "the new request is on top",
        &format!("{IDS} === 'acme-3|acme-2|{HOSTILE_REQUEST_ID}'"),
    );
    // Its explain link asks this instance, with the token, why it was recorded.
    tab.click("#tape a.explain");
    let text = tab.wait_for(
        "the explanation shows",
        "document.getElementById('tape-explain').textContent.includes('decided now')",
    );
    assert_eq!(text, true);
    let explained = tab.eval("document.getElementById('tape-explain').textContent");
    assert!(
        explained
            .as_str()
            .is_some_and(|t| t.contains("level ShapeTiming, directive acme-tape")
                && t.contains("request_id=acme-3")),
        "{explained}"
    );
    drop(browser);
    drop(rt);
}
