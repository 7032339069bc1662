//! The admin surface's routes, written once: [`ROUTES`] is what
//! [`crate::admin::router`] mounts, what answers a wrong method (405 with
//! `Allow`), and what `docs/reference/http.md` is rendered from (with
//! [`ERRORS`], the slugs every route may answer). A route added here is
//! served, documented and method-checked at once; the reference check fails
//! until the rendered page is regenerated.

use axum::routing::{get, post, MethodRouter};

use super::state::AdminState;
use super::{breakglass, handlers, page};

/// The methods a route answers (`HEAD` comes with `GET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Methods {
    /// `GET` (and `HEAD`).
    Get,
    /// `POST`, JSON bodies only.
    Post,
    /// Both.
    GetPost,
}

impl Methods {
    /// The `Allow` header of a 405 on this route.
    pub const fn allow(self) -> &'static str {
        match self {
            Methods::Get => "GET, HEAD",
            Methods::Post => "POST",
            Methods::GetPost => "GET, HEAD, POST",
        }
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone who passes the `Host` rule.
    Open,
    /// The admin token, when one is configured (everything under `/admin`),
    /// behind the browser rules.
    Token,
    /// Open; the token only with `serve --metrics-need-token`.
    MetricsToken,
    /// Open, but the data only with the token (the page's shell asks for it).
    PageShell,
}

impl Access {
    /// The reference's wording.
    pub const fn describe(self) -> &'static str {
        match self {
            Access::Open => "no",
            Access::Token => "yes",
            Access::MetricsToken => "with `--metrics-need-token`",
            Access::PageShell => "the data only with it",
        }
    }
}

/// One route.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// The path.
    pub path: &'static str,
    /// The methods it answers.
    pub methods: Methods,
    /// Whether it needs the token.
    pub access: Access,
    /// What it answers (Markdown, one paragraph).
    pub summary: &'static str,
    /// The error slugs of this route besides [`ERRORS`].
    pub errors: &'static [&'static str],
    /// Its handlers.
    handler: fn() -> MethodRouter<AdminState>,
}

impl Route {
    /// The handlers, answering any other method with 405 and `Allow`.
    pub(crate) fn method_router(&self) -> MethodRouter<AdminState> {
        let allow = self.methods.allow();
        (self.handler)().fallback(move || handlers::method_not_allowed(allow))
    }
}

/// An error any route may answer.
#[derive(Clone, Copy, Debug)]
pub struct ErrorDoc {
    /// The HTTP status.
    pub status: u16,
    /// The slug (`error` of the JSON body).
    pub slug: &'static str,
    /// When (Markdown).
    pub meaning: &'static str,
}

/// The errors of the whole surface, before or beside any route's own.
pub static ERRORS: &[ErrorDoc] = &[
    ErrorDoc { status: 401, slug: "unauthorized", meaning: "a token is configured and the request under `/admin` (or `/metrics` with `--metrics-need-token`) does not carry `Authorization: Bearer <token>`" },
    ErrorDoc { status: 403, slug: "cross_site", meaning: "`/admin/*` from another site's page (`Sec-Fetch-Site`, `Origin`)" },
    ErrorDoc { status: 404, slug: "not_found", meaning: "no such route" },
    ErrorDoc { status: 405, slug: "method_not_allowed", meaning: "the route exists, the method does not; `Allow` names the methods" },
    ErrorDoc { status: 408, slug: "request_timeout", meaning: "the request (body included) was not answered within `--request-timeout`" },
    ErrorDoc { status: 413, slug: "too_large", meaning: "a body over 1 MiB, or a set whose exact bytes would be over the decoder's limit" },
    ErrorDoc { status: 415, slug: "unsupported_media_type", meaning: "a `POST /admin/*` body not declared `Content-Type: application/json`" },
    ErrorDoc { status: 421, slug: "bad_host", meaning: "`Host` is not an IP literal, `localhost` or an `--allowed-host` name (DNS rebinding)" },
    ErrorDoc { status: 500, slug: "internal", meaning: "a failure the route does not expect; nothing was written" },
    ErrorDoc { status: 503, slug: "busy", meaning: "every admin connection is busy: a reserve connection answers only `/healthz` and `/readyz`" },
    ErrorDoc { status: 503, slug: "etcd_unavailable", meaning: "fleet mode: etcd could not be reached for a read or a write" },
];

/// Every route, in the order the reference lists them.
pub static ROUTES: &[Route] = &[
    Route {
        path: "/",
        methods: Methods::Get,
        access: Access::Open,
        summary: "303 to `/ui`: opening the instance's address in a browser leads to the page",
        errors: &[],
        handler: || get(page::root),
    },
    Route {
        path: "/ui",
        methods: Methods::Get,
        access: Access::PageShell,
        summary: "the operator's page: live directives with a ticking remaining lifetime, authoring (add, extend, end), and in fleet mode the fleet's instances and the history with rollback. Without the token (when one is configured) the shell with a token field, no data",
        errors: &[],
        handler: || get(page::page),
    },
    Route {
        path: "/ui/app.js",
        methods: Methods::Get,
        access: Access::Open,
        summary: "the page's script (static, no data)",
        errors: &[],
        handler: || get(page::script),
    },
    Route {
        path: "/ui/history.js",
        methods: Methods::Get,
        access: Access::Open,
        summary: "the page's history panel (static)",
        errors: &[],
        handler: || get(page::history_script),
    },
    Route {
        path: "/ui/tape.js",
        methods: Methods::Get,
        access: Access::Open,
        summary: "the page's break-glass tape panel (static; polls `/admin/breakglass`)",
        errors: &[],
        handler: || get(page::tape_script),
    },
    Route {
        path: "/ui/author.js",
        methods: Methods::Get,
        access: Access::Open,
        summary: "the page's authoring panel (static)",
        errors: &[],
        handler: || get(page::author_script),
    },
    Route {
        path: "/ui/app.css",
        methods: Methods::Get,
        access: Access::Open,
        summary: "the page's style (static)",
        errors: &[],
        handler: || get(page::style),
    },
    Route {
        path: "/admin/directives",
        methods: Methods::GetPost,
        access: Access::Token,
        summary: "GET: the applied set: `revision`, canonical `directives` (re-publishable), `view` with remaining lifetimes; `ETag: \"<revision>\"`; in fleet mode also `failsafe` (`engaged`, `since`, `since_unix_nanos`, `withheld`), `clamped` (`[{id, clamps}]`) and `clamped: [<ceiling slug>]` on each clamped `view` entry. POST: publish a set (body ≤ 1 MiB) into the in-memory store, or into etcd with compare-and-swap in fleet mode; `If-Match: <revision>` publishes only over that revision (412 `conflict` otherwise); `X-Osproxy-Reason` is recorded as the note's reason, the token's name as its author",
        errors: &["invalid_if_match", "unreadable_body", "invalid_reason", "conflict", "outcome_unknown", "etcd_value_too_large", "etcd_too_many_ops"],
        handler: || get(handlers::get_directives).post(handlers::post_directives),
    },
    Route {
        path: "/admin/preview",
        methods: Methods::Post,
        access: Access::Token,
        summary: "an edit of the page (`{\"op\": \"add\"|\"extend\"|\"end\", \"directive\"|\"id\", \"lifetime\", \"expected_revision\", \"reason\", \"confirmed\"}`) checked against the live set with the fleet's decoder and this instance's limits; nothing is written. Answers the changes, the new expiry, `needs_confirmation` (`capture`, `ring_buffer`, `ShapeRewriteDiff`) and `compare` (`key` or `set`: what the write will compare), or the decoder's slug",
        errors: &["invalid_edit", "invalid_lifetime", "no_such_directive", "conflict", "foreign_relative_lifetime", "malformed"],
        handler: || axum::routing::post(page::preview),
    },
    Route {
        path: "/admin/edit",
        methods: Methods::Post,
        access: Access::Token,
        summary: "the same edit, checked, then written with compare-and-swap against `expected_revision` (the revision the page showed): in etcd's prefix layout per key (the edited directive's key must be as it was then), else over the whole set; 409 `conflict` otherwise, nothing written. `reason` is required and recorded with the token's author",
        errors: &["invalid_edit", "invalid_lifetime", "reason_required", "invalid_reason", "expected_revision_required", "confirmation_required", "no_such_directive", "foreign_relative_lifetime", "malformed", "conflict", "outcome_unknown", "etcd_value_too_large", "etcd_too_many_ops"],
        handler: || post(page::edit),
    },
    Route {
        path: "/admin/page",
        methods: Methods::Get,
        access: Access::Token,
        summary: "the page's data as JSON, polled by the page once a second",
        errors: &[],
        handler: || get(page::data),
    },
    Route {
        path: "/admin/history",
        methods: Methods::Get,
        access: Access::Token,
        summary: "fleet mode: the set's revisions still in etcd's history, newest first, with author, reason, time and the ids added, removed and changed (`?limit=N&before=R`, paged by entries and bytes read: `next_before`)",
        errors: &["no_history", "invalid_limit", "invalid_before", "compacted"],
        handler: || get(page::history),
    },
    Route {
        path: "/admin/rollback",
        methods: Methods::Post,
        access: Access::Token,
        summary: "fleet mode: `{\"to\": R, \"expected_revision\": L}` (optional `reason`) republishes the set as of R with compare-and-swap on L (409 `conflict` when it moved; 410 `compacted` with `oldest`)",
        errors: &["invalid_rollback", "invalid_reason", "no_history", "no_such_revision", "conflict", "compacted", "malformed", "foreign_relative_lifetime", "outcome_unknown"],
        handler: || post(page::rollback),
    },
    Route {
        path: "/admin/breakglass",
        methods: Methods::Get,
        access: Access::Token,
        summary: "the instance's break-glass tape, newest first (`entries`, each a shape-only request record naming its `osproxy.directive.id` and `osproxy.directive.revision`, with `explain`: the `/admin/explain` query for that request), `capacity`, `enabled` (`false` when no recorder fills a tape here)",
        errors: &[],
        handler: || get(breakglass::get_breakglass),
    },
    Route {
        path: "/admin/explain",
        methods: Methods::Get,
        access: Access::Token,
        summary: "`?tenant=&index=&principal=&endpoint=&request_id=`: the decision for that request now (level, flags, winning `directive`, `revision`), its sample `bucket`, and per directive its targets (`any`/`match`/`mismatch`), sample, expiry, budget, clamps, counters and `why_not` (`expired`, `targets`, `sampled_out`, `over_budget`). Looks only: no budget is used",
        errors: &["malformed_query", "unknown_parameter", "duplicate_parameter", "invalid_endpoint", "invalid_target"],
        handler: || get(handlers::get_explain),
    },
    Route {
        path: "/healthz",
        methods: Methods::Get,
        access: Access::Open,
        summary: "200 while the process serves",
        errors: &[],
        handler: || get(handlers::healthz),
    },
    Route {
        path: "/readyz",
        methods: Methods::Get,
        access: Access::Open,
        summary: "200 once the initial read is done and, with etcd, while the last confirmation from etcd is within the staleness bound; 503 `not_ready` otherwise; with etcd both bodies carry `failsafe`",
        errors: &["not_ready"],
        handler: || get(handlers::readyz),
    },
    Route {
        path: "/metrics",
        methods: Methods::Get,
        access: Access::MetricsToken,
        summary: "Prometheus text: applied revision, staleness, reconnects, rejected publishes by reason, directives active, snapshot reads, fail-safe and clamps",
        errors: &[],
        handler: || get(handlers::metrics),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_and_access_follows_the_prefix() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(seen.insert(r.path), "{} twice", r.path);
            let under_admin = r.path.starts_with("/admin/");
            assert_eq!(under_admin, r.access == Access::Token, "{}", r.path);
        }
    }

    #[test]
    fn routes_that_write_document_the_write_errors() {
        for r in ROUTES.iter().filter(|r| r.methods != Methods::Get) {
            if r.path == "/admin/preview" {
                continue;
            }
            for slug in ["conflict", "outcome_unknown"] {
                assert!(r.errors.contains(&slug), "{} lacks {slug}", r.path);
            }
        }
    }
}
