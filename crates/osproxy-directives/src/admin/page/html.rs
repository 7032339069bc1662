//! The server-rendered page: [`render`] fills `page.html` from a
//! [`PageModel`], escaping every value with [`escape`]. The template is
//! filled in one pass, so a value that looks like a placeholder stays text.

use std::fmt::Write as _;

use super::model::{DirectiveRow, FleetRows, InstanceRow, PageModel};

/// The page's template (placeholders `{{name}}`).
const TEMPLATE: &str = include_str!("page.html");

/// `text` safe as HTML text and as a quoted attribute value: `&`, `<`, `>`,
/// `"` and `'` become character references.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page: with `model` when the request may see data, else the shell
/// that asks for the admin token (its script loads the data with it).
pub(crate) fn render(model: Option<&PageModel>) -> String {
    fill(TEMPLATE, |name| match (name, model) {
        ("auth_hidden", None) | ("data_hidden", Some(_)) => String::new(),
        ("auth_hidden", Some(_)) | ("data_hidden", None) => "hidden".to_owned(),
        ("summary", Some(m)) => escape(&summary(m)),
        ("summary", None) => "This instance needs its admin token.".to_owned(),
        ("directives", Some(m)) => m.directives.iter().map(directive_row).collect(),
        ("empty_hidden", Some(m)) if m.directives.is_empty() => String::new(),
        ("fleet_hidden", Some(m)) if m.fleet.is_some() => String::new(),
        ("fleet_summary", Some(m)) => m.fleet.as_ref().map(fleet_summary).unwrap_or_default(),
        ("instances", Some(m)) => m
            .fleet
            .iter()
            .flat_map(|f| &f.instances)
            .map(instance_row)
            .collect(),
        ("empty_hidden" | "fleet_hidden", _) => "hidden".to_owned(),
        _ => String::new(),
    })
}

/// Copies `template`, replacing each `{{name}}` with `value(name)`. Values
/// are not scanned again.
fn fill(template: &str, mut value: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&value(&rest[start + 2..start + 2 + len]));
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

/// One line on the applied set: store, source, revision, count, fail-safe.
/// The page's script writes the same line.
fn summary(m: &PageModel) -> String {
    let mut line = format!("store {}", m.store);
    if let Some(source) = &m.source {
        let _ = write!(line, " {source}");
    }
    let _ = write!(
        line,
        ", revision {}, {} directive(s)",
        m.revision,
        m.directives.len()
    );
    if let Some(since) = &m.failsafe_since {
        let _ = write!(line, ", fail-safe engaged since {since}");
    }
    line
}

fn fleet_summary(f: &FleetRows) -> String {
    match (f.error, f.latest_revision) {
        (Some(slug), _) => escape(&format!("fleet reports unavailable: {slug}")),
        (None, latest) => escape(&format!(
            "live revision {}, {} instance(s) reporting",
            latest.unwrap_or(0),
            f.instances.len()
        )),
    }
}

fn cell(out: &mut String, class: &str, text: &str) {
    let _ = write!(out, "<td class=\"{class}\">{}</td>", escape(text));
}

fn directive_row(d: &DirectiveRow) -> String {
    let mut out = String::from("<tr>");
    cell(&mut out, "id", &d.id);
    cell(&mut out, "level", d.level);
    cell(&mut out, "targets", &d.targets);
    cell(&mut out, "sample", &d.sample_per_mille.to_string());
    cell(&mut out, "flags", &d.flags);
    cell(&mut out, "expires", &d.expires_at);
    let _ = write!(
        out,
        "<td class=\"remaining\" data-remaining-secs=\"{}\">{}</td>",
        d.remaining_secs,
        escape(&d.remaining)
    );
    cell(&mut out, "clamped", &or_dash(&d.clamped.join(", ")));
    out.push_str("</tr>");
    out
}

fn instance_row(r: &InstanceRow) -> String {
    let mut out = String::new();
    let _ = write!(out, "<tr class=\"state-{}\">", r.state);
    cell(&mut out, "instance", &r.instance);
    cell(&mut out, "state", r.state);
    cell(&mut out, "applied", &r.applied_revision.to_string());
    cell(&mut out, "current", &r.current_revision.to_string());
    cell(&mut out, "count", &r.directives.to_string());
    cell(&mut out, "rejected", r.rejected.as_deref().unwrap_or("-"));
    cell(&mut out, "clamped", &or_dash(&r.clamped.join(", ")));
    cell(
        &mut out,
        "failsafe",
        r.failsafe_since.as_deref().unwrap_or("-"),
    );
    cell(&mut out, "last-report", &r.last_report);
    out.push_str("</tr>");
    out
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain-id_1.2:3"), "plain-id_1.2:3");
    }

    #[test]
    fn fill_is_one_pass() {
        let out = fill("a{{x}}b{{y}}c{{", |n| match n {
            "x" => "{{y}}".to_owned(),
            _ => "Y".to_owned(),
        });
        assert_eq!(out, "a{{y}}bYc{{");
    }

    #[test]
    fn a_hostile_target_renders_as_text() {
        let model = PageModel {
            store: "etcd",
            source: Some("/k".to_owned()),
            revision: 3,
            directives: vec![DirectiveRow {
                id: "x".to_owned(),
                level: "Shape",
                targets: "tenant=<script>alert(1)</script>".to_owned(),
                sample_per_mille: 1000,
                flags: "-".to_owned(),
                expires_at: "2026-01-01T00:00:00Z".to_owned(),
                remaining_secs: 60,
                remaining: "1m".to_owned(),
                clamped: Vec::new(),
            }],
            failsafe_since: None,
            fleet: None,
        };
        let html = render(Some(&model));
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("tenant=&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("{{"), "every placeholder is filled");
        let shell = render(None);
        assert!(!shell.contains("<td"), "the shell carries no data");
    }
}
