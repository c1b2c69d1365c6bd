//! The signals fltd acts on, delivered as messages on a channel so that the run loop can
//! `select!` over them with everything else. `signal-hook` does the async-signal-safe part.

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::{Handle, Signals};
use std::thread::JoinHandle;

/// A signal fltd acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: graceful exit 0.
    Terminate,
    /// SIGINT: graceful exit 0.
    Interrupt,
    /// SIGHUP: re-read the configuration and rebuild, keeping the API listeners.
    Hangup,
    /// SIGUSR1: dump the state as JSON to stdout.
    User1,
}

impl Signal {
    fn from_raw(raw: i32) -> Option<Signal> {
        match raw {
            SIGTERM => Some(Signal::Terminate),
            SIGINT => Some(Signal::Interrupt),
            SIGHUP => Some(Signal::Hangup),
            SIGUSR1 => Some(Signal::User1),
            _ => None,
        }
    }
}

/// Catches SIGTERM, SIGINT, SIGHUP and SIGUSR1 from [`SignalListener::start`] on, and sends each
/// to the channel in the order they arrived (several of one kind between two wake-ups may
/// arrive as one). Dropping the listener stops the thread; the signals stay caught (ignored).
#[derive(Debug)]
pub struct SignalListener {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalListener {
    pub fn start(to: Sender<Signal>) -> std::io::Result<SignalListener> {
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("signals".to_string())
            .spawn(move || {
                for raw in signals.forever() {
                    if let Some(signal) = Signal::from_raw(raw)
                        && to.send(signal).is_err()
                    {
                        return;
                    }
                }
            })?;
        Ok(SignalListener {
            handle,
            thread: Some(thread),
        })
    }

    /// Starts a listener with a fresh channel.
    pub fn channel() -> std::io::Result<(SignalListener, Receiver<Signal>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((SignalListener::start(tx)?, rx))
    }
}

impl Drop for SignalListener {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // One test raises every signal: catching is process-wide, so tests must not overlap.
    #[test]
    fn raised_signals_arrive_as_messages() {
        let (listener, signals) = SignalListener::channel().expect("listen");
        for (raw, expected) in [
            (SIGHUP, Signal::Hangup),
            (SIGUSR1, Signal::User1),
            (SIGTERM, Signal::Terminate),
            (SIGINT, Signal::Interrupt),
        ] {
            signal_hook::low_level::raise(raw).expect("raise");
            let got = signals
                .recv_timeout(Duration::from_secs(10))
                .expect("a signal");
            assert_eq!(got, expected);
        }
        drop(listener);
    }
}
