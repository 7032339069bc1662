//! [`FleetStatus`]: the live revision and every instance report, read in
//! one consistent snapshot.
//!
//! A reader, so it lives beside what it reads ([`crate::instance`], the
//! reports the stores write) rather than in [`crate::publisher`], the write
//! side; it is a [`Publisher`] method only to share its connection.

use etcd_client::{GetOptions, Txn, TxnOp, TxnOpResponse};

use crate::instance::InstanceStatus;
use crate::publisher::live::{key_string, newest_revision};
use crate::publisher::{PublishError, Publisher};

/// The fleet as the per-instance status keys report it
/// ([`crate::InstanceReport`]), read in one consistent snapshot with the
/// directives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetStatus {
    /// The live revision (see the module docs of [`crate::publisher`]).
    pub latest_revision: i64,
    /// Every readable instance report, ordered by key.
    pub instances: Vec<InstanceStatus>,
    /// Status keys whose value is not a well-formed instance report (see
    /// [`InstanceStatus::is_well_formed`]): ignored, and listed here.
    pub unreadable: Vec<String>,
}

impl Publisher {
    /// Reads the live revision and every instance report under
    /// `status_prefix` in one consistent snapshot.
    ///
    /// # Errors
    /// A request error.
    ///
    /// ```no_run
    /// # async fn f(publisher: &osproxy_etcd::Publisher) -> Result<(), osproxy_etcd::PublishError> {
    /// let fleet = publisher.fleet_status(osproxy_etcd::DEFAULT_STATUS_PREFIX).await?;
    /// let behind = fleet
    ///     .instances
    ///     .iter()
    ///     .filter(|i| i.applied_revision < fleet.latest_revision)
    ///     .count();
    /// println!("{behind} of {} instances behind", fleet.instances.len());
    /// # Ok(()) }
    /// ```
    pub async fn fleet_status(&self, status_prefix: &str) -> Result<FleetStatus, PublishError> {
        let directive_opts = self.layout.get_options().with_keys_only();
        let txn = Txn::new().and_then([
            TxnOp::get(self.layout.key(), Some(directive_opts)),
            TxnOp::get(
                self.layout.revision_key(),
                Some(GetOptions::new().with_keys_only()),
            ),
            TxnOp::get(status_prefix, Some(GetOptions::new().with_prefix())),
        ]);
        let mut client = self.client.clone();
        let resp = self.request("read status", client.txn(txn)).await?;
        let gets: Vec<_> = resp
            .op_responses()
            .into_iter()
            .filter_map(|r| match r {
                TxnOpResponse::Get(g) => Some(g),
                _ => None,
            })
            .collect();
        let latest_revision = gets
            .iter()
            .take(2)
            .map(|g| newest_revision(g.kvs()))
            .max()
            .unwrap_or(0);
        let mut instances = Vec::new();
        let mut unreadable = Vec::new();
        for kv in gets.get(2).iter().flat_map(|g| g.kvs()) {
            let suffix = kv.key().strip_prefix(status_prefix.as_bytes());
            match serde_json::from_slice::<InstanceStatus>(kv.value()) {
                Ok(s) if suffix.is_some_and(|k| s.is_well_formed(k)) => instances.push(s),
                _ => unreadable.push(key_string(kv)),
            }
        }
        Ok(FleetStatus {
            latest_revision,
            instances,
            unreadable,
        })
    }
}
