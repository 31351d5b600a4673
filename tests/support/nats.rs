//! A real NATS server with JetStream (Debian's `nats-server`, `/usr/sbin/nats-server -js`) on
//! 127.0.0.1:<free port>, its store in a tempdir. Killed on drop.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use super::{free_port, wait_started};

pub const NATS_BIN: &str = "/usr/sbin/nats-server";
/// Starts tried when a free port was taken before the server bound it.
const START_ATTEMPTS: usize = 3;

pub struct NatsServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Start a JetStream server with an empty store.
    pub fn start() -> NatsServer {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match NatsServer::try_start() {
                Ok(n) => return n,
                Err(logs) => last = logs,
            }
        }
        panic!("nats-server did not start in {START_ATTEMPTS} attempts:\n{last}");
    }

    fn try_start() -> Result<NatsServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("ringcrawl-nats")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let child = spawn(&dir, port);
        let mut n = NatsServer { child, port, dir };
        n.wait_up()?;
        Ok(n)
    }

    /// Wait until the server accepts connections (`Err`: why not, with its log).
    fn wait_up(&mut self) -> Result<(), String> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        wait_started(&mut self.child, || TcpStream::connect(addr).is_ok())
            .map_err(|e| format!("nats-server on {addr} {e}:\n{}", self.logs()))
    }

    /// Kill the server (SIGKILL), as a crash or a lost network would look to its clients.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.dir, self.port);
        if let Err(e) = self.wait_up() {
            panic!("restarting: {e}");
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

/// `nats-server -js` on 127.0.0.1:`port`, its store and log in `dir` (the log appended to).
fn spawn(dir: &tempfile::TempDir, port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("server.log"))
        .expect("server.log");
    Command::new(NATS_BIN)
        .arg("-js")
        .arg("-sd")
        .arg(dir.path().join("store"))
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {NATS_BIN} (install nats-server): {e}"))
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
