//! Explain (SPEC §8): which directives a request would get and why, as one
//! JSON document shared by `GET /admin/explain` and the `explain`
//! subcommand, so the page, the CLI and curl read the same thing.
//!
//! The request is described by `tenant`, `index`, `principal`, `endpoint`
//! and `request_id` (the parameters of the route, the flags of the
//! subcommand). Parsing is fail-closed like the decoder: an unknown or
//! repeated parameter (a typo such as `tennant` must not explain a
//! tenant-less request instead), an unknown endpoint or an invalid target is
//! refused with a slug. Unset attributes are absent from the request;
//! `endpoint` defaults to `Unknown` and `request_id` to the empty id (its
//! sample bucket is shown, so a sampled directive's verdict can be read).
//!
//! With `header` (a signed `X-Debug-Directive` value) the document also says
//! how this instance judges it (`header.verdict`: `accepted`, or why not)
//! and the decision it raises to (`raised`), when the instance has a header
//! trust store (`serve --header-trust-store`).
//!
//! Explaining only looks: budgets are not used and nothing is counted.

use osproxy_core::{EndpointKind, IndexName, Instant, PartitionId, PrincipalId, RequestId};
use osproxy_etcd::{Ceilings, ClampedDirective};
use osproxy_observe::decode::is_valid_target;
use osproxy_observe::encode::directive_value;
use osproxy_observe::token::raise;
use osproxy_observe::{format_rfc3339, DirectiveSet, Judgement, RequestAttrs, TokenVerifier};
use serde_json::{json, Value};

/// The request to explain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExplainRequest {
    /// The request's tenant, if it has one.
    pub tenant: Option<PartitionId>,
    /// The index it targets, if any.
    pub index: Option<IndexName>,
    /// Its principal, if any.
    pub principal: Option<PrincipalId>,
    /// Its endpoint kind; `Unknown` by default.
    pub endpoint: Option<EndpointKind>,
    /// Its id (sampling hashes it); empty by default.
    pub request_id: String,
    /// A signed single-request header (`X-Debug-Directive`) to judge and
    /// fold into the decision, when given (SPEC §9).
    pub header: Option<String>,
}

/// The parameter names, in the order they are documented.
pub const PARAMETERS: [&str; 6] = [
    "tenant",
    "index",
    "principal",
    "endpoint",
    "request_id",
    "header",
];

impl ExplainRequest {
    /// Builds the request from `name=value` pairs (a query string's).
    ///
    /// # Errors
    /// `unknown_parameter`, `duplicate_parameter`, `invalid_endpoint` or
    /// `invalid_target` (a tenant, index or principal empty or over 256
    /// chars; a request id over 256 chars).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, &'static str> {
        let mut req = ExplainRequest::default();
        let mut seen = [false; PARAMETERS.len()];
        for (name, value) in pairs {
            let slot = PARAMETERS
                .iter()
                .position(|p| *p == name)
                .ok_or("unknown_parameter")?;
            if std::mem::replace(&mut seen[slot], true) {
                return Err("duplicate_parameter");
            }
            let target = || {
                if is_valid_target(value) {
                    Ok(value.to_owned())
                } else {
                    Err("invalid_target")
                }
            };
            match name {
                "tenant" => req.tenant = Some(PartitionId::from(target()?)),
                "index" => req.index = Some(IndexName::from(target()?)),
                "principal" => req.principal = Some(PrincipalId::from(target()?)),
                "endpoint" => {
                    req.endpoint = Some(
                        value
                            .parse::<EndpointKind>()
                            .map_err(|_| "invalid_endpoint")?,
                    );
                }
                "header" => req.header = Some(value.to_owned()),
                _ => {
                    if value.chars().count() > 256 {
                        return Err("invalid_target");
                    }
                    req.request_id = value.to_owned();
                }
            }
        }
        Ok(req)
    }

    /// The request's attributes, borrowed from it.
    pub fn attrs(&self) -> RequestAttrs<'_> {
        let mut attrs = RequestAttrs::new(self.endpoint.unwrap_or(EndpointKind::Unknown));
        if let Some(t) = &self.tenant {
            attrs = attrs.with_tenant(t);
        }
        if let Some(i) = &self.index {
            attrs = attrs.with_index(i);
        }
        if let Some(p) = &self.principal {
            attrs = attrs.with_principal(p);
        }
        attrs
    }
}

fn target(t: Option<bool>) -> Value {
    match t {
        None => json!("any"),
        Some(true) => json!("match"),
        Some(false) => json!("mismatch"),
    }
}

/// The explanation of `req` against `set` at `now`, as JSON: the decision
/// (with the winning directive's id and the set's revision), the request's
/// sample bucket, and every directive's verdict with the ceilings that
/// clamped it on this instance (`clamped`).
pub fn explain_json(
    set: &DirectiveSet,
    req: &ExplainRequest,
    now: Instant,
    clamped: &[ClampedDirective],
) -> Value {
    let id = RequestId::from(req.request_id.as_str());
    let e = set.explain(&req.attrs(), now, &id);
    let winner = set.winner(&e.decision).map(|d| d.id.clone());
    let directives: Vec<Value> = e
        .directives
        .iter()
        .map(|d| {
            let why_not = if d.applies {
                None
            } else if !d.live {
                Some("expired")
            } else if !d.matched {
                Some("targets")
            } else if !d.in_sample {
                Some("sampled_out")
            } else {
                Some("over_budget")
            };
            json!({
                "id": d.id,
                "level": d.level.wire_name(),
                "applies": d.applies,
                "winner": d.winner,
                "why_not": why_not,
                "targets": {
                    "tenant": target(d.tenant),
                    "index": target(d.index),
                    "principal": target(d.principal),
                    "endpoint": target(d.endpoint),
                },
                "sample_per_mille": d.sample_per_mille,
                "in_sample": d.in_sample,
                "live": d.live,
                "expires_at": d.expires_at_unix_nanos.map(format_rfc3339),
                "budget": d.budget.map(|(used, max)| json!({
                    "max_per_sec": max,
                    "used_this_second": used,
                    "exhausted": used >= max,
                })),
                "clamped": clamped
                    .iter()
                    .find(|c| c.id == d.id)
                    .map(|c| json!(c.clamps)),
                "counts": d.counts,
            })
        })
        .collect();
    json!({
        "decision": {
            "level": e.decision.level.wire_name(),
            "ring_buffer": e.decision.ring_buffer,
            "capture": e.decision.capture,
            "directive": winner,
            "revision": e.decision.revision,
        },
        "request": {
            "tenant": req.tenant.as_ref().map(ToString::to_string),
            "index": req.index.as_ref().map(ToString::to_string),
            "principal": req.principal.as_ref().map(ToString::to_string),
            "endpoint": req.endpoint.unwrap_or(EndpointKind::Unknown).wire_name(),
            "request_id": req.request_id,
            "bucket": e.bucket,
        },
        "directives": directives,
    })
}

/// A header's judgement as JSON: `verdict` (slug), `accepted`, `key_id`,
/// `request_id` (its binding), `decode_reason` and the `directive` it grants.
pub fn judgement_json(j: &Judgement) -> Value {
    json!({
        "verdict": j.verdict.slug(),
        "accepted": j.is_accepted(),
        "key_id": j.key_id,
        "request_id": j.bound_request.as_ref().map(|r| r.as_str().to_owned()),
        "decode_reason": j.decode_reason.map(|r| r.slug()),
        "directive": j.directive.as_ref().map(directive_value),
    })
}

/// Adds the judgement of `req.header` to an [`explain_json`] document:
/// `"header"` (see [`judgement_json`]; `{"verdict": "no_trust_store"}` when
/// the instance trusts no header key), and `"raised"`, the decision once an
/// accepted header's directive (clamped to `ceilings`, as instances apply
/// it) is folded in: the higher level wins. Looks only, like explain.
pub fn explain_header(
    doc: &mut Value,
    set: &DirectiveSet,
    req: &ExplainRequest,
    now: Instant,
    verifier: Option<&TokenVerifier>,
    ceilings: &Ceilings,
) {
    let Some(header) = &req.header else { return };
    let Some(verifier) = verifier else {
        doc["header"] = json!({ "verdict": "no_trust_store", "accepted": false });
        return;
    };
    let id = RequestId::from(req.request_id.as_str());
    let judgement = verifier.judge(header, Some(&id));
    doc["header"] = judgement_json(&judgement);
    if let Some(directive) = judgement.accepted_directive() {
        let (directive, clamps) = osproxy_etcd::trust::clamp_header(directive, ceilings);
        let attrs = req.attrs();
        let base = set.explain(&attrs, now, &id).decision;
        let raised = raise(base, Some(&directive), &attrs, now, &id);
        doc["raised"] = json!({
            "level": raised.level.wire_name(),
            "ring_buffer": raised.ring_buffer,
            "capture": raised.capture,
            "by_header": raised.level > base.level,
            "clamped": clamps,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_fail_closed() {
        let ok = ExplainRequest::from_pairs([("tenant", "acme"), ("endpoint", "Search")]);
        assert_eq!(ok.map(|r| r.endpoint), Ok(Some(EndpointKind::Search)));
        for (pairs, slug) in [
            (vec![("tennant", "acme")], "unknown_parameter"),
            (
                vec![("tenant", "a"), ("tenant", "b")],
                "duplicate_parameter",
            ),
            (vec![("endpoint", "Nope")], "invalid_endpoint"),
            (vec![("index", "")], "invalid_target"),
        ] {
            assert_eq!(ExplainRequest::from_pairs(pairs), Err(slug));
        }
    }
}
