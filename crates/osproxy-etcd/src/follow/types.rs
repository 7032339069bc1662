//! What the core reads: etcd's answers as crate-owned values. The shell
//! (`crate::wire`) converts etcd-client's types into these; nothing in
//! [`crate::follow`] names an `etcd_client` type, so the core runs on
//! histories a test or the simulator makes up.

/// One key-value as etcd reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Kv {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
    pub(crate) mod_revision: i64,
    pub(crate) create_revision: i64,
}

/// A watch event. A delete carries the key and the delete's revision in
/// `kv.mod_revision` (etcd's tombstone), its value empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A key was written.
    Put(Kv),
    /// A key was deleted.
    Delete(Kv),
}

impl Event {
    /// The key-value the event is about.
    pub(crate) fn kv(&self) -> &Kv {
        match self {
            Event::Put(kv) | Event::Delete(kv) => kv,
        }
    }
}

/// The header of every response: the store's revision when it answered and
/// the cluster that answered (0 when the answerer does not say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) revision: i64,
    pub(crate) cluster_id: u64,
}

/// One message of a watch stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct WatchMsg {
    pub(crate) header: Header,
    /// Non-zero: the watch's start revision was compacted away.
    pub(crate) compact_revision: i64,
    pub(crate) canceled: bool,
    pub(crate) created: bool,
    /// Empty for a creation or a progress notification.
    pub(crate) events: Vec<Event>,
}

impl WatchMsg {
    /// Bytes of values it carries (what decoding it costs).
    pub(crate) fn value_bytes(&self) -> usize {
        self.events.iter().map(|e| e.kv().value.len()).sum()
    }
}

/// A read of the whole key or prefix at `header.revision`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) header: Header,
    pub(crate) kvs: Vec<Kv>,
}

impl Snapshot {
    /// Bytes of values it carries.
    pub(crate) fn value_bytes(&self) -> usize {
        self.kvs.iter().map(|kv| kv.value.len()).sum()
    }
}

/// What a liveness read answered: a keys-only range with `min_mod_revision`
/// just above the applied revision and a limit of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LivenessRead {
    pub(crate) header: Header,
    /// Keys modified after the applied revision (at most the limit, 1).
    pub(crate) newer_keys: usize,
    /// Keys in the range, whatever the filter (etcd's `count`).
    pub(crate) count: usize,
}
