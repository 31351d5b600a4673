//! Signals, handled on a small thread of their own: a current-thread tokio runtime waits for
//! the signals asked for and hands each one, as it arrives, to a callback running on that
//! thread. The daemon turns them into events for its loop; `fetch` stops on the first
//! SIGINT/SIGTERM and exits at once on the second. Installing a handler replaces the
//! signal's default action (termination) for the rest of the process.

use std::io;
use std::sync::mpsc;

use tokio::signal::unix::{signal, SignalKind};

/// Exit status after a signal: 128 + its number (130 for SIGINT, 143 for SIGTERM), what a
/// shell reports for a process the signal ended.
pub(crate) const EXIT_STATUS_BASE: i32 = 128;

/// The conventional exit status after `signal`.
pub(crate) fn exit_status(signal: libc::c_int) -> u8 {
    u8::try_from(EXIT_STATUS_BASE + signal).unwrap_or(u8::MAX)
}

/// The name of a signal handled here, for messages.
pub(crate) fn name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// Handle `signals` (e.g. `libc::SIGINT`) on a new thread named `signals`: `on_signal` is
/// called with each one as it arrives, until it returns false. Returns once every handler
/// is installed, so from then on none of them has its default action.
pub(crate) fn spawn<F>(signals: &[libc::c_int], mut on_signal: F) -> io::Result<()>
where
    F: FnMut(libc::c_int) -> bool + Send + 'static,
{
    let signals = signals.to_vec();
    let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                for &number in &signals {
                    let mut stream = match signal(SignalKind::from_raw(number)) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while stream.recv().await.is_some() {
                            if tx.send(number).is_err() {
                                return;
                            }
                        }
                    });
                }
                let _ = ready_tx.send(Ok(()));
                while let Some(number) = rx.recv().await {
                    if !on_signal(number) {
                        return;
                    }
                }
            });
        })?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("signal thread ended")))
}
