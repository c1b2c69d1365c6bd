//! [`Watch`]: a thread that follows one prefix and streams its changes into a channel.

use super::client::EtcdClient;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use flt_core::registry::{Event, Failure};
use std::time::{Duration, Instant};

/// First pause after a failed poll; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A stream shorter than this that brought nothing counts as a failed attempt.
const MIN_STREAM: Duration = Duration::from_millis(100);

/// A running watch. Changes arrive on [`Watch::events`] in index order, each exactly once; the
/// stream ends after one `Err` (the watch cannot go on) or when the watch is cancelled.
///
/// Outages do not end a watch: while no endpoint answers it retries with a capped backoff, and
/// resumes from the index after the last change it delivered, so an etcd restart loses nothing.
/// It ends with [`Failure::HistoryLost`] when etcd has forgotten that index (more than 1000
/// changes since), and with [`Failure::Rejected`] when etcd refuses it (e.g. bad credentials).
///
/// It follows etcd's streamed watches (see [`EtcdClient::watch_stream`]): one request carries
/// many changes until it ends (after [`super::EtcdConfig::watch_poll_timeout`] at the latest),
/// then the next one resumes after the last change delivered. What it delivers is what a
/// sequence of long-polls would report.
///
/// Dropping or cancelling stops it; the thread itself exits when its stream next delivers or
/// ends (at most [`super::EtcdConfig::watch_poll_timeout`] later) and sends nothing more.
#[derive(Debug)]
pub struct Watch {
    events: Receiver<Result<Event, Failure>>,
    cancel: Option<Sender<()>>,
}

impl Watch {
    /// The changes, then at most one failure.
    pub fn events(&self) -> &Receiver<Result<Event, Failure>> {
        &self.events
    }

    /// Stops the watch.
    pub fn cancel(&mut self) {
        self.cancel = None;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Whether the watch was cancelled (the sender side was dropped).
fn cancelled(cancel: &Receiver<()>) -> bool {
    matches!(cancel.try_recv(), Err(TryRecvError::Disconnected))
}

/// Follows `prefix` from `from_index` (0: from now), handing each change to `deliver` until it
/// returns false, the watch is cancelled, or a definite failure (handed over last) ends it.
pub(crate) fn follow(
    client: &EtcdClient,
    prefix: &str,
    from_index: u64,
    cancel: &Receiver<()>,
    mut deliver: impl FnMut(Result<Event, Failure>) -> bool,
) {
    let mut index = from_index;
    let mut backoff = MIN_BACKOFF;
    while !cancelled(cancel) {
        let started = Instant::now();
        let mut consumer = |event| !cancelled(cancel) && deliver(Ok(event));
        let result = client.watch_stream(prefix, index, &mut consumer);
        match result {
            Ok(end) if end.stopped => return,
            // A stream that ended at once with nothing in it (etcd shutting down?) is retried
            // after the backoff, not in a busy loop.
            Ok(end) if end.delivered == 0 && started.elapsed() < MIN_STREAM => {
                index = end.next_index;
                match cancel.recv_timeout(backoff) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Ok(end) => {
                backoff = MIN_BACKOFF;
                index = end.next_index;
            }
            Err(failure @ (Failure::Unreachable(_) | Failure::Timeout)) => {
                // Warn once per outage, not once per retry.
                if backoff == MIN_BACKOFF {
                    log::warn!("watch of {prefix} at index {index}: {failure}; retrying");
                } else {
                    log::debug!("watch of {prefix} at {index}: {failure}; retry in {backoff:?}");
                }
                match cancel.recv_timeout(backoff) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(failure) => {
                if !cancelled(cancel) {
                    deliver(Err(failure));
                }
                return;
            }
        }
    }
}

impl EtcdClient {
    /// Starts a thread that watches everything under `prefix` from `from_index` (0: from now).
    /// See [`Watch`] for what it delivers.
    pub fn watch(&self, prefix: &str, from_index: u64) -> Watch {
        let (events_tx, events) = crossbeam_channel::unbounded();
        let (cancel, cancel_rx) = crossbeam_channel::bounded::<()>(0);
        let client = self.clone();
        let prefix = prefix.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("etcd-watch {prefix}"))
            .spawn(move || {
                follow(&client, &prefix, from_index, &cancel_rx, |item| {
                    events_tx.send(item).is_ok()
                });
            });
        if let Err(e) = spawned {
            let (tx, rx) = crossbeam_channel::bounded(1);
            // The channel has room for this one message.
            let _ = tx.send(Err(Failure::Unreachable(format!(
                "cannot start a watch thread: {e}"
            ))));
            return Watch {
                events: rx,
                cancel: Some(cancel),
            };
        }
        Watch {
            events,
            cancel: Some(cancel),
        }
    }
}
