//! [`RegistryDriver`]: carries out the core's registry requests on worker threads.

use super::client::EtcdClient;
use super::watch::follow;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use flt_core::registry::{OpId, Reply, Request, Response};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type WatchTable = BTreeMap<OpId, (u64, Sender<()>)>;

/// Runs the core's registry requests against etcd.
///
/// - Get, Put and Delete are queued to a pool of worker threads; each is answered by exactly one
///   [`Response`] with its [`OpId`]. Requests run concurrently, so two requests in flight may be
///   applied in either order: the core waits for a reply where order matters. The pool grows
///   to its maximum while more requests wait than workers do, and shrinks back to [`MIN_WORKERS`]
///   once none has for [`IDLE_WORKER_LIFETIME`]: a failover wants a dozen writes in flight, an
///   idle daemon no threads (and stacks) for them.
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
    jobs: Receiver<(OpId, Request)>,
    pool: Arc<Pool>,
    /// Running watches by id, with a serial number telling a watch from a later one with the
    /// same id; dropping the sender cancels the watch.
    watches: Arc<Mutex<WatchTable>>,
    next_serial: AtomicU64,
}

/// The call workers that never end while the driver runs.
pub const MIN_WORKERS: usize = 2;

/// Workers beyond [`MIN_WORKERS`] end once no request has found every worker busy for this
/// long.
pub const IDLE_WORKER_LIFETIME: Duration = Duration::from_secs(60);

/// The call workers' bookkeeping.
#[derive(Debug)]
struct Pool {
    max: usize,
    idle_lifetime: Duration,
    /// Workers running (counted before their thread starts).
    alive: AtomicUsize,
    /// Workers waiting for a request.
    idle: AtomicUsize,
    /// When a request last found every worker busy (ms since `epoch`): workers beyond the
    /// floor end once that is `idle_lifetime` ago. (Not each worker's own idle time: the
    /// channel hands requests to the longest-waiting worker, so under a trickle of requests
    /// every worker keeps getting one.)
    last_saturated: AtomicU64,
    epoch: Instant,
    next_name: AtomicUsize,
    /// Running workers' handles, joined on drop; a worker ending on its own detaches itself.
    handles: Mutex<BTreeMap<usize, JoinHandle<()>>>,
}

impl RegistryDriver {
    /// A driver with up to `workers` (at least 1) call threads. Responses are sent to
    /// `responses`.
    pub fn start(
        client: EtcdClient,
        responses: Sender<Response>,
        workers: usize,
    ) -> RegistryDriver {
        Self::start_with_idle_lifetime(client, responses, workers, IDLE_WORKER_LIFETIME)
    }

    /// [`RegistryDriver::start`] with another idle lifetime for the workers beyond
    /// [`MIN_WORKERS`] (tests).
    pub fn start_with_idle_lifetime(
        client: EtcdClient,
        responses: Sender<Response>,
        workers: usize,
        idle_lifetime: Duration,
    ) -> RegistryDriver {
        let (queue, jobs) = crossbeam_channel::unbounded::<(OpId, Request)>();
        let driver = RegistryDriver {
            client,
            responses,
            queue: Some(queue),
            jobs,
            pool: Arc::new(Pool {
                max: workers.max(1),
                idle_lifetime,
                alive: AtomicUsize::new(0),
                idle: AtomicUsize::new(0),
                last_saturated: AtomicU64::new(0),
                epoch: Instant::now(),
                next_name: AtomicUsize::new(0),
                handles: Mutex::new(BTreeMap::new()),
            }),
            watches: Arc::new(Mutex::new(BTreeMap::new())),
            next_serial: AtomicU64::new(0),
        };
        for _ in 0..MIN_WORKERS.min(driver.pool.max) {
            driver.spawn_worker();
        }
        driver
    }

    /// How many call workers are running now.
    pub fn worker_count(&self) -> usize {
        self.pool.alive.load(Ordering::SeqCst)
    }

    /// How many call workers were started so far (those that ended included).
    pub fn workers_started(&self) -> usize {
        self.pool.next_name.load(Ordering::SeqCst)
    }

    /// Starts one more call worker unless the pool is at its maximum.
    fn spawn_worker(&self) {
        let pool = &self.pool;
        let reserved = pool
            .alive
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < pool.max).then_some(n + 1)
            });
        if reserved.is_err() {
            return;
        }
        let name = pool.next_name.fetch_add(1, Ordering::Relaxed);
        let jobs = self.jobs.clone();
        let client = self.client.clone();
        let responses = self.responses.clone();
        let shared = Arc::clone(pool);
        // The handle goes in before the thread can look for it to detach itself.
        let mut handles = pool.handles.lock().unwrap_or_else(PoisonError::into_inner);
        let spawned = std::thread::Builder::new()
            .name(format!("etcd-call-{name}"))
            .spawn(move || {
                if !work(&shared, &jobs, &client, &responses) {
                    shared.alive.fetch_sub(1, Ordering::SeqCst);
                }
                // Detach: nobody will join a worker that ended on its own.
                drop(
                    shared
                        .handles
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&name),
                );
            });
        match spawned {
            Ok(handle) => {
                handles.insert(name, handle);
            }
            Err(e) => {
                pool.alive.fetch_sub(1, Ordering::SeqCst);
                log::error!("cannot start etcd worker thread: {e}");
            }
        }
    }

    /// Carries out `request`; its outcome comes back as a [`Response`] with this `id`.
    pub fn submit(&self, id: OpId, request: Request) {
        if let Request::Watch { prefix, from_index } = request {
            self.start_watch(id, prefix, from_index);
            return;
        }
        let Some(queue) = self
            .queue
            .as_ref()
            .filter(|q| q.send((id, request)).is_ok())
        else {
            let _ = self.responses.send(Response {
                id,
                result: Err(flt_core::registry::Failure::Unreachable(
                    "registry driver stopped".to_string(),
                )),
            });
            return;
        };
        // More requests waiting than workers waiting: every worker is (or is about to be)
        // busy. Counting the queue, not only the idle workers, matters for a burst: a worker
        // counts itself busy only once it has woken up to take a request, so a burst sent
        // faster than that would otherwise never grow the pool.
        if queue.len() > self.pool.idle.load(Ordering::SeqCst) {
            self.pool
                .last_saturated
                .store(self.pool.millis(), Ordering::SeqCst);
            self.spawn_worker();
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
        let handles = std::mem::take(
            &mut *self
                .pool
                .handles
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (_, worker) in handles {
            let _ = worker.join();
        }
    }
}

impl Pool {
    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether no request found every worker busy for the idle lifetime.
    fn oversized(&self) -> bool {
        let since = self
            .millis()
            .saturating_sub(self.last_saturated.load(Ordering::SeqCst));
        Duration::from_millis(since) >= self.idle_lifetime
    }
}

/// A call worker: serves requests until the driver is dropped or, beyond [`MIN_WORKERS`], the
/// pool has had a worker to spare for its idle lifetime. Returns true if it took itself out of
/// `pool.alive` (the idle case: leaving and the count change together).
fn work(
    pool: &Pool,
    jobs: &Receiver<(OpId, Request)>,
    client: &EtcdClient,
    responses: &Sender<Response>,
) -> bool {
    let tick = pool.idle_lifetime.min(Duration::from_secs(5));
    loop {
        pool.idle.fetch_add(1, Ordering::SeqCst);
        let job = jobs.recv_timeout(tick);
        pool.idle.fetch_sub(1, Ordering::SeqCst);
        match job {
            Ok((id, request)) => {
                let result = client.call(&request);
                if responses.send(Response { id, result }).is_err() {
                    return false;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return false,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // Leave unless that would take the pool below its floor.
        if pool.oversized()
            && pool
                .alive
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n > MIN_WORKERS).then_some(n - 1)
                })
                .is_ok()
        {
            return true;
        }
    }
}
