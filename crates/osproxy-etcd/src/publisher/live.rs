//! Reading the live state: the keys, the revision marker and the live
//! revision in one consistent snapshot, and decoding it the way instances do.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use etcd_client::{Client, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};
use osproxy_observe::manifest::{value_hash, Manifest};
use osproxy_observe::signed::{open_signed, open_value, payload_of};
use osproxy_observe::{
    decode_directive, decode_directive_set_with, DecodeError, DirectiveSet, RejectReason,
    TimedDirective,
};
use serde_json::Value;

use super::{request, PublishError, Publisher};
use crate::config::Layout;

/// The raw live state.
pub(crate) struct Live {
    /// The key, or every key under the prefix (keys only for revision reads).
    pub(crate) kvs: Vec<KeyValue>,
    /// The live revision (see the module docs of [`crate::publisher`]).
    pub(crate) revision: i64,
    /// The header revision of the read.
    pub(crate) header: i64,
    /// The cluster that answered.
    pub(crate) cluster_id: u64,
    /// The revision marker, with its value (its note), when it exists.
    pub(crate) marker: Option<KeyValue>,
}

/// The live set as instances would serve it, with what they would reject.
#[derive(Clone, Debug)]
pub struct LiveSet {
    /// The live revision.
    pub revision: i64,
    /// Every directive that decodes (in the prefix layout: from every key
    /// that decodes; a rejected key is left out, as instances leave it out).
    pub set: DirectiveSet,
    /// Directives stored with a relative lifetime (`ttl_secs`, written by
    /// another tool), by id, with that lifetime in seconds. Instances anchor
    /// such a lifetime when they first see the key's revision, a moment that
    /// is recorded nowhere; in [`set`](Self::set) they are anchored at the
    /// time of this read, which is *not* when they end.
    pub relative: BTreeMap<String, u64>,
    /// Keys whose value is rejected, each with the decoder's reason.
    pub rejected: Vec<KeyRejection>,
}

/// A live key whose value the fleet rejects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRejection {
    /// The etcd key.
    pub key: String,
    /// Its modification revision.
    pub mod_revision: i64,
    /// Why it is rejected (`duplicate_id` when an earlier key has its id).
    pub error: DecodeError,
}

/// Reads the layout's range and its marker in one transaction.
pub(crate) async fn read_live(
    client: &Client,
    layout: &Layout,
    limit: Duration,
    keys_only: bool,
) -> Result<Live, PublishError> {
    read_range(client, layout, limit, keys_only, None).await
}

/// Reads the layout's range and its marker in one transaction, as of
/// revision `at` (the latest with `None`). The marker is read with its value
/// (a small note) unless `keys_only`.
pub(crate) async fn read_range(
    client: &Client,
    layout: &Layout,
    limit: Duration,
    keys_only: bool,
    at: Option<i64>,
) -> Result<Live, PublishError> {
    let mut range = layout.get_options();
    let mut marker = GetOptions::new();
    if keys_only {
        range = range.with_keys_only();
        marker = marker.with_keys_only();
    }
    if let Some(at) = at {
        range = range.with_revision(at);
        marker = marker.with_revision(at);
    }
    let txn = Txn::new().and_then([
        TxnOp::get(layout.key(), Some(range)),
        TxnOp::get(layout.revision_key(), Some(marker)),
    ]);
    let mut client = client.clone();
    let resp = request(limit, "read", client.txn(txn)).await?;
    let header = resp.header().map_or(0, |h| h.revision());
    let cluster_id = resp.header().map_or(0, |h| h.cluster_id());
    let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
        TxnOpResponse::Get(g) => Some(g),
        _ => None,
    });
    let kvs = gets.next().map(|mut g| g.take_kvs()).unwrap_or_default();
    let marker = gets
        .next()
        .and_then(|mut g| g.take_kvs().into_iter().next());
    let marker_revision = marker.as_ref().map_or(0, KeyValue::mod_revision);
    Ok(Live {
        revision: newest_revision(&kvs).max(marker_revision),
        kvs,
        header,
        cluster_id,
        marker,
    })
}

/// The newest modification revision among `kvs`, 0 when empty.
pub(crate) fn newest_revision(kvs: &[KeyValue]) -> i64 {
    kvs.iter().map(KeyValue::mod_revision).max().unwrap_or(0)
}

pub(crate) fn key_string(kv: &KeyValue) -> String {
    String::from_utf8_lossy(kv.key()).into_owned()
}

impl Publisher {
    /// The live set and the live revision (0 when nothing is published). In
    /// the prefix layout the keys are composed into one set. `ttl_secs`
    /// values written by other tools are anchored now (see [`LiveSet`]).
    ///
    /// # Errors
    /// [`PublishError::Malformed`] when a live value does not decode (in the
    /// prefix layout also when two keys carry the same id), or a request
    /// error. [`live`](Self::live) reports such keys instead.
    pub async fn current(&self) -> Result<(DirectiveSet, i64), PublishError> {
        let live = self.live().await?;
        match live.rejected.into_iter().next() {
            None => Ok((live.set, live.revision)),
            Some(r) => Err(PublishError::Malformed {
                key: r.key,
                revision: live.revision,
                source: r.error,
            }),
        }
    }

    /// The live set as instances would serve it: every key that decodes,
    /// with the rejected keys and the relative lifetimes reported beside it.
    ///
    /// # Errors
    /// A request error.
    pub async fn live(&self) -> Result<LiveSet, PublishError> {
        let live = self.read().await?;
        Ok(self.decode_live(&live))
    }

    /// The live revision, without reading the values.
    ///
    /// # Errors
    /// A request error.
    pub async fn revision(&self) -> Result<i64, PublishError> {
        Ok(
            read_live(&self.client, &self.layout, self.request_timeout, true)
                .await?
                .revision,
        )
    }

    pub(crate) async fn read(&self) -> Result<Live, PublishError> {
        read_live(&self.client, &self.layout, self.request_timeout, false).await
    }

    /// A live value's payload, checked against the trust store when set.
    fn open<'a>(&self, kv: &'a KeyValue) -> Result<&'a [u8], DecodeError> {
        Ok(open_value(kv.value(), kv.key(), self.trust.as_deref())?)
    }

    pub(crate) fn decode_live(&self, live: &Live) -> LiveSet {
        let clock = self.clock.as_ref();
        let mut out = LiveSet {
            revision: live.revision,
            set: DirectiveSet::new(),
            relative: BTreeMap::new(),
            rejected: Vec::new(),
        };
        let reject = |kv: &KeyValue, error| KeyRejection {
            key: key_string(kv),
            mod_revision: kv.mod_revision(),
            error,
        };
        match &self.layout {
            Layout::Key(_) => {
                if let Some(kv) = live.kvs.first() {
                    match self
                        .open(kv)
                        .and_then(|v| decode_directive_set_with(v, clock, &self.limits))
                    {
                        Ok(set) => {
                            out.relative = relative_lifetimes(payload_of(kv.value()), false);
                            out.set = set;
                        }
                        Err(e) => out.rejected.push(reject(kv, e)),
                    }
                }
            }
            Layout::Prefix(prefix) => {
                let mut list = Vec::with_capacity(live.kvs.len());
                let mut ids = HashSet::new();
                let manifest = self.live_manifest(prefix, live, &mut out.rejected);
                for kv in live.kvs.iter().filter(|kv| kv.key() != prefix.as_bytes()) {
                    let listed = |d: &TimedDirective| {
                        manifest
                            .as_ref()
                            .is_none_or(|m| m.admits(&d.id, &value_hash(kv.value())))
                    };
                    match self
                        .open(kv)
                        .and_then(|v| decode_directive(v, clock, &self.limits))
                    {
                        Ok(d) if !listed(&d) => out
                            .rejected
                            .push(reject(kv, DecodeError::whole(RejectReason::NotInManifest))),
                        Ok(d) if kv.key() != super::directive_key(prefix, &d.id).as_bytes() => out
                            .rejected
                            .push(reject(kv, DecodeError::whole(RejectReason::KeyIdMismatch))),
                        Ok(d) if !ids.insert(d.id.clone()) => out
                            .rejected
                            .push(reject(kv, DecodeError::whole(RejectReason::DuplicateId))),
                        Ok(d) => {
                            out.relative
                                .extend(relative_lifetimes(payload_of(kv.value()), true));
                            list.push(d);
                        }
                        Err(e) => out.rejected.push(reject(kv, e)),
                    }
                }
                // Each directive passed the decoder and ids are unique.
                match DirectiveSet::try_from_directives(list) {
                    Ok(set) => out.set = set,
                    Err(e) => out.rejected.push(KeyRejection {
                        key: self.layout.key().to_owned(),
                        mod_revision: live.revision,
                        error: e,
                    }),
                }
            }
        }
        out
    }
}

impl Publisher {
    /// The prefix's signed manifest as instances gate on it: `None` when
    /// keys are not gated (no trust store, or no manifest and v2 not
    /// required); else the manifest that verifies, or an empty one (every
    /// key refused) when it does not (its rejection reported).
    fn live_manifest(
        &self,
        prefix: &str,
        live: &Live,
        rejected: &mut Vec<KeyRejection>,
    ) -> Option<Manifest> {
        let trust = self.trust.as_deref()?;
        let Some(kv) = live.kvs.iter().find(|kv| kv.key() == prefix.as_bytes()) else {
            return trust.requires_signed_v2().then(Manifest::new);
        };
        let opened = open_signed(kv.value(), kv.key(), Some(trust)).and_then(|o| {
            o.meta.ok_or(RejectReason::LegacySignature)?;
            Manifest::decode(o.payload, &self.limits)
        });
        match opened {
            Ok(m) => Some(m),
            Err(r) => {
                rejected.push(KeyRejection {
                    key: key_string(kv),
                    mod_revision: kv.mod_revision(),
                    error: DecodeError::whole(r),
                });
                Some(Manifest::new())
            }
        }
    }
}

/// The `ttl_secs` lifetimes in a value that decoded: `(id, seconds)`.
pub(crate) fn relative_lifetimes(value: &[u8], single_directive: bool) -> BTreeMap<String, u64> {
    let Ok(v) = serde_json::from_slice::<Value>(value) else {
        return BTreeMap::new();
    };
    let one = |d: &Value| {
        let id = d.get("id")?.as_str()?.to_owned();
        let ttl = d.get("ttl_secs")?.as_u64()?;
        Some((id, ttl))
    };
    if single_directive {
        return one(&v).into_iter().collect();
    }
    v.get("directives")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(one).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_lifetimes_are_found_in_both_layouts() {
        let set = br#"{"directives":[{"id":"a","level":"Shape","ttl_secs":60},
            {"id":"b","level":"Shape","expires_at":"2030-01-01T00:00:00Z"}]}"#;
        let found = relative_lifetimes(set, false);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), [("a".into(), 60)]);
        let one = br#"{"id":"c","level":"Shape","ttl_secs":5}"#;
        assert_eq!(relative_lifetimes(one, true).get("c"), Some(&5));
        let absolute = br#"{"id":"c","level":"Shape","expires_at":"2030-01-01T00:00:00Z"}"#;
        assert!(relative_lifetimes(absolute, true).is_empty());
    }
}
