//! [`Driver`]: carries a [`Session`]'s commands out over etcd-client — the
//! one I/O shell of every watch (the store's background task and the
//! publisher's change feed). It opens one connection at a time
//! ([`crate::connection::open`]), bounds every request, converts what etcd
//! says ([`crate::wire`]) and hands it back; it decides nothing itself.
//! What the consumer needs to see (a set to serve, a connection given up,
//! a phase, a note) comes out of [`Driver::next`], one at a time, so the
//! consumer can run its own timers beside it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, WatchStream};
use osproxy_observe::DirectiveSet;
use tokio::time::sleep_until;

use super::{Command, Note, Session};
use crate::config::{Connection, Layout};
use crate::error::{bounded, client_error_kind, TransportError};
use crate::follow::{Header, Snapshot};
use crate::offload::decode_work;
use crate::publisher::live::read_live;
use crate::status::WatchPhase;
use crate::{connection, timers, wire};

/// What the consumer must see.
#[derive(Debug)]
pub(crate) enum Out {
    /// Serve `set`, applied as of `revision`.
    Swap {
        set: Arc<DirectiveSet>,
        revision: i64,
    },
    /// The connection to `endpoint` failed or was given up.
    GaveUp { endpoint: usize, why: &'static str },
    /// Where the driver is now.
    Phase(WatchPhase),
    /// A watch is open ([`Driver::client`] is its connection).
    Watching,
    /// What the session said.
    Note(Note),
}

/// The driver of one session.
pub(crate) struct Driver {
    pub(crate) session: Session,
    connection: Connection,
    layout: Layout,
    /// Reads take the publisher's revision marker too
    /// ([`Driver::live_revision`]).
    marker_reads: bool,
    /// Bound on connecting and opening the watch (the connect timeout, or a
    /// first connect's share of it).
    limit: Duration,
    client: Option<Client>,
    stream: Option<WatchStream>,
    /// A command whose phase was reported and that runs next.
    pending: Option<Command>,
    outs: VecDeque<Out>,
    last_error: Option<etcd_client::Error>,
    live_revision: i64,
}

impl Driver {
    /// A driver for `session` over `connection`'s endpoints.
    pub(crate) fn new(
        session: Session,
        connection: Connection,
        layout: Layout,
        marker_reads: bool,
    ) -> Driver {
        Driver {
            session,
            limit: connection.connect_timeout(),
            connection,
            layout,
            marker_reads,
            client: None,
            stream: None,
            pending: None,
            outs: VecDeque::new(),
            last_error: None,
            live_revision: 0,
        }
    }

    /// (Re)starts at `endpoint`, connecting within `limit` (the connect
    /// timeout from then on).
    pub(crate) fn start(&mut self, endpoint: usize, limit: Duration) {
        self.limit = limit;
        self.pending = None;
        self.session.start(endpoint);
    }

    /// The endpoint in use or being tried.
    pub(crate) fn endpoint(&self) -> &str {
        let eps = self.connection.endpoints();
        eps.get(self.session.endpoint()).map_or("", String::as_str)
    }

    /// The endpoint at `i`.
    pub(crate) fn endpoint_at(&self, i: usize) -> &str {
        self.connection
            .endpoints()
            .get(i)
            .map_or("", String::as_str)
    }

    /// The open connection.
    pub(crate) fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// The client error of the last failure, if it was one.
    pub(crate) fn take_error(&mut self) -> Option<etcd_client::Error> {
        self.last_error.take()
    }

    /// The live revision (marker included) of the last read, with
    /// `marker_reads`.
    pub(crate) fn live_revision(&self) -> i64 {
        self.live_revision
    }

    /// The next thing the consumer must see; carries out commands and waits
    /// for etcd and the session's timers until there is one.
    pub(crate) async fn next(&mut self) -> Out {
        loop {
            if let Some(out) = self.outs.pop_front() {
                return out;
            }
            if let Some(note) = self.session.poll_note() {
                return Out::Note(note);
            }
            if let Some(cmd) = self.pending.take() {
                self.execute(cmd).await;
                continue;
            }
            if let Some(cmd) = self.session.poll() {
                let phase = match cmd {
                    Command::Connect { .. } => Some(WatchPhase::Connecting),
                    Command::Read => Some(WatchPhase::Reading),
                    _ => None,
                };
                if let Some(phase) = phase {
                    self.pending = Some(cmd);
                    return Out::Phase(phase);
                }
                self.execute(cmd).await;
                continue;
            }
            self.wait().await;
        }
    }

    /// Waits for the watch's next message or the session's next timer.
    async fn wait(&mut self) {
        let due = self.session.poll_timeout();
        let Some(stream) = self.stream.as_mut() else {
            match due {
                Some(at) => {
                    sleep_until(at).await;
                    self.session.handle_timeout(timers::now());
                }
                // Nothing open and nothing due (a first connect that
                // failed): start over where the session stands.
                None => {
                    let endpoint = self.session.endpoint();
                    self.start(endpoint, self.connection.connect_timeout());
                }
            }
            return;
        };
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(resp)) => {
                    let msg = wire::watch_msg(&resp);
                    drop(resp);
                    let session = &mut self.session;
                    decode_work(msg.value_bytes(), || {
                        session.handle_watch_msg(timers::now(), msg);
                    });
                }
                Ok(None) => self
                    .session
                    .handle_stream_end(timers::now(), "watch stream ended"),
                Err(e) => self
                    .session
                    .handle_stream_end(timers::now(), client_error_kind(&e)),
            },
            () = sleep_until(due.unwrap_or_else(timers::now)), if due.is_some() => {
                self.session.handle_timeout(timers::now());
            }
        }
    }

    fn request_limit(&self) -> Duration {
        self.limit.min(self.connection.request_timeout())
    }

    fn failed(&mut self, e: TransportError) {
        let why = why(&e);
        if let TransportError::Request { source, .. } = e {
            self.last_error = Some(source);
        } else {
            self.last_error = None;
        }
        self.session.handle_failed(timers::now(), why);
    }

    async fn execute(&mut self, cmd: Command) {
        match cmd {
            Command::Connect { endpoint } => {
                // Close the old watch before anything opens a new one.
                self.stream = None;
                self.client = None;
                let ep = self.endpoint_at(endpoint).to_owned();
                let open = connection::open(self.connection.settings(), &ep);
                match bounded(self.limit, "connect", open).await {
                    Ok(client) => {
                        self.client = Some(client);
                        self.session.handle_connected();
                    }
                    Err(e) => self.failed(e),
                }
            }
            Command::CheckHeld { revision } => {
                let Some(client) = self.client.as_mut() else {
                    return self.session.handle_failed(timers::now(), "no connection");
                };
                let limit = self.limit.min(self.connection.request_timeout());
                match connection::resumable(client, &self.layout, revision + 1, limit).await {
                    Ok(held) => self.session.handle_held(held),
                    Err(e) => self.failed(e),
                }
            }
            Command::Read => match self.read().await {
                Ok(snapshot) => {
                    let session = &mut self.session;
                    decode_work(snapshot.value_bytes(), || session.handle_read(snapshot));
                }
                Err(e) => self.failed(e),
            },
            Command::Watch { from } => {
                let Some(client) = self.client.as_mut() else {
                    return self.session.handle_failed(timers::now(), "no connection");
                };
                let opts = self.layout.watch_options(from).with_progress_notify();
                let key = self.layout.key().to_owned();
                match bounded(self.limit, "watch", client.watch(key, Some(opts))).await {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        self.limit = self.connection.connect_timeout();
                        self.session.handle_watch_opened(timers::now());
                        self.outs.push_back(Out::Phase(WatchPhase::Watching));
                        self.outs.push_back(Out::Watching);
                    }
                    Err(e) => self.failed(e),
                }
            }
            Command::RequestProgress => {
                let closed = match self.stream.as_mut() {
                    Some(stream) => stream.request_progress().await.is_err(),
                    None => true,
                };
                if closed {
                    self.session
                        .handle_stream_end(timers::now(), "watch stream closed");
                }
            }
            Command::LivenessRead {
                min_mod_revision,
                deadline,
            } => self.liveness_read(min_mod_revision, deadline).await,
            Command::Swap { set, revision } => self.outs.push_back(Out::Swap { set, revision }),
            Command::GiveUp { endpoint, why } => {
                self.stream = None;
                self.client = None;
                self.outs.push_back(Out::GaveUp { endpoint, why });
            }
            Command::Sleep { until } => {
                let delay = until.saturating_duration_since(timers::now());
                tracing::debug!(?delay, "backing off before the next connect");
                self.outs.push_back(Out::Phase(WatchPhase::Backoff));
            }
        }
    }

    /// Reads the whole range (and the marker, with `marker_reads`).
    async fn read(&mut self) -> Result<Snapshot, TransportError> {
        let limit = self.request_limit();
        let Some(client) = self.client.as_mut() else {
            return Err(TransportError::Timeout {
                op: "read",
                after: limit,
            });
        };
        if self.marker_reads {
            let live = read_live(client, &self.layout, limit, false)
                .await
                .map_err(|e| match e {
                    crate::PublishError::Transport(t) => t,
                    _ => TransportError::Timeout {
                        op: "read",
                        after: limit,
                    },
                })?;
            self.live_revision = live.revision;
            return Ok(Snapshot {
                header: Header {
                    revision: live.header,
                    cluster_id: live.cluster_id,
                },
                kvs: live.kvs.iter().map(wire::kv).collect(),
            });
        }
        let key = self.layout.key().to_owned();
        let opts = Some(self.layout.get_options());
        let resp = bounded(limit, "read", client.get(key, opts)).await?;
        Ok(wire::snapshot(&resp))
    }

    /// One liveness read, answered by `deadline` or the session's timer
    /// gives the connection up.
    async fn liveness_read(&mut self, min_mod_revision: i64, deadline: tokio::time::Instant) {
        let Some(client) = self.client.as_mut() else {
            return self.session.handle_failed(timers::now(), "no connection");
        };
        let opts: GetOptions = self
            .layout
            .get_options()
            .with_keys_only()
            .with_min_mod_revision(min_mod_revision)
            .with_limit(1);
        let key = self.layout.key().to_owned();
        let left = deadline.saturating_duration_since(timers::now());
        match bounded(left, "read", client.get(key, Some(opts))).await {
            Ok(resp) => self
                .session
                .handle_liveness_read(timers::now(), &wire::liveness_read(&resp)),
            // Unanswered by the bound: the session's timer is due.
            Err(TransportError::Timeout { .. }) => self.session.handle_timeout(timers::now()),
            Err(e) => self.failed(e),
        }
    }
}

/// The stable slug of a failed step.
fn why(e: &TransportError) -> &'static str {
    match e {
        TransportError::Request { kind, .. } => kind,
        TransportError::Timeout { op: "connect", .. } => "connect timeout",
        TransportError::Timeout { op: "watch", .. } => "watch timeout",
        TransportError::Timeout { .. } => "read timeout",
    }
}
