//! [`RegistryDriver`]: carries out the core's registry requests on worker threads.

use super::client::EtcdClient;
use super::watch::follow;
use crossbeam_channel::{Receiver, Sender};
use flt_core::registry::{OpId, Reply, Request, Response};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

type WatchTable = BTreeMap<OpId, (u64, Sender<()>)>;

/// Runs the core's registry requests against etcd.
///
/// - Get, Put and Delete are queued to a pool of worker threads; each is answered by exactly one
///   [`Response`] with its [`OpId`]. Requests run concurrently, so two requests in flight may be
///   applied in either order: the core waits for a reply where order matters.
/// - A Watch gets its own thread and is answered by any number of `Ok(Reply::Event)` responses,
///   then at most one `Err` that ends it (see [`super::Watch`] for which failures end a watch).
///   [`RegistryDriver::cancel_watch`] stops it without a final response.
///
/// Dropping the driver finishes the queued requests, joins the workers and cancels every watch.
#[derive(Debug)]
pub struct RegistryDriver {
    client: EtcdClient,
    responses: Sender<Response>,
    queue: Option<Sender<(OpId, Request)>>,
    workers: Vec<JoinHandle<()>>,
    /// Running watches by id, with a serial number telling a watch from a later one with the
    /// same id; dropping the sender cancels the watch.
    watches: Arc<Mutex<WatchTable>>,
    next_serial: AtomicU64,
}

impl RegistryDriver {
    /// Starts `workers` (at least 1) call threads. Responses are sent to `responses`.
    pub fn start(
        client: EtcdClient,
        responses: Sender<Response>,
        workers: usize,
    ) -> RegistryDriver {
        let (queue, jobs) = crossbeam_channel::unbounded::<(OpId, Request)>();
        let workers = (0..workers.max(1))
            .filter_map(|n| {
                let jobs: Receiver<(OpId, Request)> = jobs.clone();
                let client = client.clone();
                let responses = responses.clone();
                std::thread::Builder::new()
                    .name(format!("etcd-call-{n}"))
                    .spawn(move || {
                        for (id, request) in jobs.iter() {
                            let result = client.call(&request);
                            if responses.send(Response { id, result }).is_err() {
                                return;
                            }
                        }
                    })
                    .map_err(|e| log::error!("cannot start etcd worker thread: {e}"))
                    .ok()
            })
            .collect();
        RegistryDriver {
            client,
            responses,
            queue: Some(queue),
            workers,
            watches: Arc::new(Mutex::new(BTreeMap::new())),
            next_serial: AtomicU64::new(0),
        }
    }

    /// Carries out `request`; its outcome comes back as a [`Response`] with this `id`.
    pub fn submit(&self, id: OpId, request: Request) {
        if let Request::Watch { prefix, from_index } = request {
            self.start_watch(id, prefix, from_index);
            return;
        }
        let queued = self
            .queue
            .as_ref()
            .is_some_and(|q| q.send((id, request)).is_ok());
        if !queued {
            let _ = self.responses.send(Response {
                id,
                result: Err(flt_core::registry::Failure::Unreachable(
                    "registry driver stopped".to_string(),
                )),
            });
        }
    }

    /// Stops the watch started with `id`. Returns false if no such watch is running.
    pub fn cancel_watch(&self, id: OpId) -> bool {
        self.watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
            .is_some()
    }

    /// How many watches are running.
    pub fn watch_count(&self) -> usize {
        self.watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn start_watch(&self, id: OpId, prefix: String, from_index: u64) {
        let (cancel, cancel_rx) = crossbeam_channel::bounded::<()>(0);
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        // A second watch with the same id replaces (and so cancels) the first.
        self.watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (serial, cancel));
        let client = self.client.clone();
        let responses = self.responses.clone();
        let watches = Arc::clone(&self.watches);
        let spawned = std::thread::Builder::new()
            .name(format!("etcd-watch {prefix}"))
            .spawn(move || {
                follow(&client, &prefix, from_index, &cancel_rx, |item| {
                    let result = item.map(Reply::Event);
                    responses.send(Response { id, result }).is_ok()
                });
                let mut watches = watches.lock().unwrap_or_else(PoisonError::into_inner);
                // Remove our entry only if it was not replaced by a newer watch with this id.
                if watches.get(&id).is_some_and(|(s, _)| *s == serial) {
                    watches.remove(&id);
                }
            });
        if let Err(e) = spawned {
            self.cancel_watch(id);
            let _ = self.responses.send(Response {
                id,
                result: Err(flt_core::registry::Failure::Unreachable(format!(
                    "cannot start a watch thread: {e}"
                ))),
            });
        }
    }
}

impl Drop for RegistryDriver {
    fn drop(&mut self) {
        self.watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.queue = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
