//! An sd_notify socket for the daemon's `NOTIFY_SOCKET`: every datagram it sends, in order
//! (READY, STATUS, WATCHDOG, STOPPING), kept by a thread until the handle is dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Notify {
    /// The socket's path: what `NOTIFY_SOCKET` is set to.
    pub path: PathBuf,
    seen: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
}

impl Notify {
    /// Bind a datagram socket at `path` and start keeping what arrives.
    pub fn new(path: PathBuf) -> Notify {
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (log, end) = (seen.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !end.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    log.lock().unwrap().push(msg);
                }
            }
        });
        Notify { path, seen, done }
    }

    /// Every datagram so far.
    pub fn messages(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Datagrams containing `s`.
    pub fn count(&self, s: &str) -> usize {
        self.messages().iter().filter(|m| m.contains(s)).count()
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}
