//! The directive sets the harness publishes and the request it evaluates.
//!
//! Publishes alternate between two values, `A` and `B`, that differ in the
//! level of the one directive the probe request matches: every write is a real
//! change (the store swaps), and a reader can tell the two apart by
//! evaluating the probe request.

use osproxy_core::{EndpointKind, IndexName, PartitionId, PrincipalId, RequestId};
use osproxy_observe::{format_rfc3339, DiagLevel, RequestAttrs};

use crate::sys::wall;

/// The tenant the probe request carries; one directive of each set targets it.
const PROBE_TENANT: &str = "tenant-probe";

/// Two alternating values of one key.
#[derive(Clone, Debug)]
pub struct Values {
    a: String,
    b: String,
}

impl Values {
    /// Two sets of `directives` directives (at least 1), each targeting a
    /// distinct tenant, with an absolute expiry six hours from now (our
    /// publishers store absolute expiries, SPEC §2).
    pub fn new(directives: usize) -> Values {
        let directives = directives.max(1);
        let expires = format_rfc3339(wall() + 6 * 3600 * 1_000_000_000);
        Values {
            a: body(directives, "Shape", &expires),
            b: body(directives, "ShapeTiming", &expires),
        }
    }

    /// The value of write number `i` (even: `A`, odd: `B`).
    pub fn value(&self, i: usize) -> &str {
        if i % 2 == 0 {
            &self.a
        } else {
            &self.b
        }
    }

    /// What the probe request evaluates to once write `i` is applied.
    pub fn level(i: usize) -> DiagLevel {
        if i % 2 == 0 {
            DiagLevel::Shape
        } else {
            DiagLevel::ShapeTiming
        }
    }

    /// Size of one value in bytes.
    pub fn bytes(&self) -> usize {
        self.a.len().max(self.b.len())
    }
}

fn body(n: usize, probe_level: &str, expires: &str) -> String {
    let probe_at = n / 2;
    let list: Vec<String> = (0..n)
        .map(|i| {
            if i == probe_at {
                format!(
                    r#"{{"id":"d-{i}","level":"{probe_level}","tenant":"{PROBE_TENANT}","expires_at":"{expires}"}}"#
                )
            } else {
                format!(
                    r#"{{"id":"d-{i}","level":"ShapeRewriteDiff","tenant":"tenant-{i}","index":"logs-{i}","sample_per_mille":500,"expires_at":"{expires}"}}"#
                )
            }
        })
        .collect();
    format!(r#"{{"directives":[{}]}}"#, list.join(","))
}

/// The request the readers evaluate: every attribute set, one directive
/// matching.
#[derive(Clone, Debug)]
pub struct Probe {
    tenant: PartitionId,
    index: IndexName,
    principal: PrincipalId,
    /// The request id (decides sampling; the probe directive samples all).
    pub id: RequestId,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            tenant: PartitionId::from(PROBE_TENANT),
            index: IndexName::from("logs-probe"),
            principal: PrincipalId::from("svc-probe"),
            id: RequestId::from("0d5c2b6e-6f1c-4a43-9a8e-3f1f6b1c9d20"),
        }
    }
}

impl Probe {
    /// The borrowed attributes the evaluator takes.
    pub fn attrs(&self) -> RequestAttrs<'_> {
        RequestAttrs::new(EndpointKind::Search)
            .with_tenant(&self.tenant)
            .with_index(&self.index)
            .with_principal(&self.principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osproxy_core::{Clock, SystemClock};
    use osproxy_observe::decode_directive_set;

    #[test]
    fn both_values_decode_and_tell_apart() {
        let clock = SystemClock;
        let probe = Probe::default();
        for n in [1, 10, 100] {
            let v = Values::new(n);
            for i in 0..2 {
                let set = decode_directive_set(v.value(i).as_bytes(), &clock).unwrap();
                assert_eq!(set.len(), n);
                let level = set.evaluate(&probe.attrs(), clock.now(), &probe.id);
                assert_eq!(level, Values::level(i));
            }
        }
    }
}
