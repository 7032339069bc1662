//! A target of the harness and whether a run met it, with the one rule for
//! ratios: over a missing or non-positive baseline the verdict is "n/a".

use serde::Serialize;

use crate::report::f3;

/// One target and whether this run met it.
#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: String,
    /// `None` when the run had nothing to check it with.
    pub pass: Option<bool>,
}

pub fn sub(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

/// `a / b`, or `None` (a verdict of "n/a") when either is missing or the
/// baseline is not positive: a ratio over a zero or negative baseline says
/// nothing.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b > 0.0).then(|| a / b)
}

impl Target {
    /// A target on `a / b ≤ limit`, measured in one run; "n/a" when the
    /// baseline `b` is missing or not positive.
    pub fn ratio_at_most(
        name: String,
        target: &str,
        a: Option<f64>,
        b: Option<f64>,
        limit: f64,
    ) -> Target {
        let r = ratio(a, b);
        Target {
            name,
            target: target.into(),
            measured: format!("{} / {} = {}", f3(a), f3(b), ratio_text(r)),
            pass: r.map(|r| r <= limit),
        }
    }
}

/// `ratio` as text.
pub fn ratio_text(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{r:.2}×"))
}
