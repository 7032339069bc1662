//! etcd-client's answers as the watch core's types ([`crate::follow`]): the
//! one place that knows both.

use etcd_client::{EventType, GetResponse, KeyValue, ResponseHeader, WatchResponse};

use crate::follow::{Event, Header, Kv, LivenessRead, Snapshot, WatchMsg};

/// One key-value, copied.
pub(crate) fn kv(kv: &KeyValue) -> Kv {
    Kv {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
        create_revision: kv.create_revision(),
    }
}

/// A response header (zeros when absent).
pub(crate) fn header(h: Option<&ResponseHeader>) -> Header {
    h.map_or_else(Header::default, |h| Header {
        revision: h.revision(),
        cluster_id: h.cluster_id(),
    })
}

/// A watch message.
pub(crate) fn watch_msg(resp: &WatchResponse) -> WatchMsg {
    WatchMsg {
        header: header(resp.header()),
        compact_revision: resp.compact_revision(),
        canceled: resp.canceled(),
        created: resp.created(),
        events: resp
            .events()
            .iter()
            .filter_map(|e| {
                let kv = kv(e.kv()?);
                Some(match e.event_type() {
                    EventType::Put => Event::Put(kv),
                    EventType::Delete => Event::Delete(kv),
                })
            })
            .collect(),
    }
}

/// A read of the key or prefix.
pub(crate) fn snapshot(resp: &GetResponse) -> Snapshot {
    Snapshot {
        header: header(resp.header()),
        kvs: resp.kvs().iter().map(kv).collect(),
    }
}

/// A liveness read's answer.
pub(crate) fn liveness_read(resp: &GetResponse) -> LivenessRead {
    LivenessRead {
        header: header(resp.header()),
        newer_keys: resp.kvs().len(),
        count: usize::try_from(resp.count()).unwrap_or(usize::MAX),
    }
}
