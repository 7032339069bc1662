//! The single-request channel's seam (SPEC §9): [`DirectiveVerifier`] turns a
//! signed request header into the one directive it authorises, and
//! [`NoVerifier`], the default, authorises nothing.
//!
//! The seam is the seed's; a concrete verifier (Ed25519, key ids, a short
//! maximum lifetime) implements it outside this crate. A verified directive
//! is evaluated with [`crate::DiagnosticsDirective::level_if_applies`].

use crate::directive::DiagnosticsDirective;

/// Verifies a signed directive header into the directive it authorises.
pub trait DirectiveVerifier: Send + Sync {
    /// The directive a valid header authorises, or `None` when the header is
    /// absent, malformed, wrongly signed or expired.
    fn verify(&self, header_value: &str) -> Option<DiagnosticsDirective>;
}

/// The default verifier: no header channel is configured, so every header is
/// rejected.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoVerifier;

impl DirectiveVerifier for NoVerifier {
    fn verify(&self, _header_value: &str) -> Option<DiagnosticsDirective> {
        None
    }
}
