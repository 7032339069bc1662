//! The reference of `docs/reference/` is what the code renders now: the CLI
//! page and the man pages from the clap definitions, the HTTP page from the
//! route table, the metrics page from the metric table (see `osproxy_directives::reference`). A stale page fails
//! here, in CI; `UPDATE_REFERENCE=1` rewrites the pages instead.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use osproxy_directives::admin::routes::{ERRORS, ROUTES};
use osproxy_directives::reference;

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference")
}

/// Every page: its path under `docs/reference/` and its rendering now.
fn pages() -> Vec<(String, Vec<u8>)> {
    let mut pages = vec![
        ("cli.md".to_owned(), reference::cli_markdown().into_bytes()),
        (
            "http.md".to_owned(),
            reference::http_markdown().into_bytes(),
        ),
        (
            "metrics.md".to_owned(),
            reference::metrics_markdown().into_bytes(),
        ),
    ];
    let cmd = reference::command();
    let name = cmd.get_name().to_owned();
    let mut man = |file: String, cmd: clap::Command| {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out).unwrap();
        pages.push((format!("man/{file}"), out));
    };
    man(format!("{name}.1"), cmd.clone());
    for sub in cmd.get_subcommands() {
        let title = format!("{name}-{}", sub.get_name());
        man(
            format!("{title}.1"),
            sub.clone()
                .display_name(title)
                .bin_name(format!("{name} {}", sub.get_name())),
        );
    }
    pages
}

#[test]
fn the_checked_in_reference_is_current() {
    let dir = reference_dir();
    let update = std::env::var_os("UPDATE_REFERENCE").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    let pages = pages();
    for (path, rendered) in &pages {
        let file = dir.join(path);
        if update {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, rendered).unwrap();
        } else if std::fs::read(&file).ok().as_deref() != Some(rendered.as_slice()) {
            stale.push(path.clone());
        }
    }
    // A page no longer rendered (a removed subcommand) is stale too.
    let rendered: Vec<&str> = pages.iter().map(|(p, _)| p.as_str()).collect();
    for entry in std::fs::read_dir(dir.join("man")).unwrap() {
        let file = format!("man/{}", entry.unwrap().file_name().to_string_lossy());
        if !rendered.contains(&file.as_str()) {
            if update {
                std::fs::remove_file(dir.join(&file)).unwrap();
            } else {
                stale.push(file);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "docs/reference is stale: {stale:?}; run `UPDATE_REFERENCE=1 cargo test -p osproxy-directives --test reference` and commit the result"
    );
}

/// Every slug the HTTP reference names is one the admin code answers (it
/// appears as a string literal in the admin sources), and every slug the
/// admin code gives `ApiError::new` literally is in the reference.
#[test]
fn the_documented_slugs_are_the_answered_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut code = String::new();
    let mut dirs = vec![src.join("admin")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                code.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    code.push_str(&std::fs::read_to_string(src.join("explain.rs")).unwrap());
    // The table itself does not count.
    let code = code.replace(
        &std::fs::read_to_string(src.join("admin/routes.rs")).unwrap(),
        "",
    );
    let documented: Vec<&str> = ROUTES
        .iter()
        .flat_map(|r| r.errors.iter().copied())
        .chain(ERRORS.iter().map(|e| e.slug))
        .collect();
    for (i, _) in code.match_indices("ApiError::new(") {
        let mut args = code[i + "ApiError::new(".len()..].splitn(3, ',');
        let _status = args.next();
        let slug = args.next().unwrap_or_default().trim();
        if let Some(slug) = slug.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            assert!(
                documented.contains(&slug),
                "{slug} is answered but not in the route table"
            );
        }
    }
    // A publish error's slug comes from osproxy-etcd (`PublishError::slug`,
    // answered through `PublishError::fault`), so its source counts too.
    let publish_errors = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../osproxy-etcd/src/publisher/error.rs"),
    )
    .unwrap();
    for slug in documented {
        assert!(
            code.contains(&format!("\"{slug}\""))
                || publish_errors.contains(&format!("\"{slug}\"")),
            "{slug} is documented but no admin code answers it"
        );
    }
}
