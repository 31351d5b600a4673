//! A real HTTP proxy (Debian's tinyproxy, `/usr/bin/tinyproxy`) on 127.0.0.1:<free port>,
//! with a generated config in a tempdir: no upstream, only 127.0.0.1 allowed, `CONNECT` open
//! to the given ports only, optional Basic authentication, its log in the tempdir. It
//! resolves origin names itself (the system resolver: `localhost` works, `*.site.test` does
//! not). Killed on drop.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use super::{free_port, wait_started};

pub const TINYPROXY_BIN: &str = "/usr/bin/tinyproxy";
/// Starts tried when a free port was taken before tinyproxy bound it.
const START_ATTEMPTS: usize = 3;
/// Seconds tinyproxy waits on an idle connection.
const IDLE_TIMEOUT_SECS: u32 = 30;

/// How to configure the proxy.
#[derive(Clone, Debug, Default)]
pub struct TinyproxyConfig {
    /// Ports a `CONNECT` may reach (tinyproxy allows every port when none is listed, so at
    /// least one should be).
    pub connect_ports: Vec<u16>,
    /// `BasicAuth USER PASSWORD`: every request must carry these credentials.
    pub basic_auth: Option<(String, String)>,
}

pub struct Tinyproxy {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// Start tinyproxy with `config`. A port taken between [`free_port`] and tinyproxy's
    /// bind is retried with a new port.
    pub fn start(config: &TinyproxyConfig) -> Tinyproxy {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Tinyproxy::try_start(config) {
                Ok(t) => return t,
                Err(logs) => last = logs,
            }
        }
        panic!("tinyproxy did not start in {START_ATTEMPTS} attempts:\n{last}");
    }

    fn try_start(config: &TinyproxyConfig) -> Result<Tinyproxy, String> {
        let dir = tempfile::Builder::new()
            .prefix("ringcrawl-tinyproxy")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let d = dir.path().display();
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout {IDLE_TIMEOUT_SECS}\n\
             LogFile \"{d}/tinyproxy.log\"\nLogLevel Info\nPidFile \"{d}/tinyproxy.pid\"\n\
             MaxClients 256\nAllow 127.0.0.1\n"
        );
        for p in &config.connect_ports {
            let _ = writeln!(conf, "ConnectPort {p}");
        }
        if let Some((user, password)) = &config.basic_auth {
            let _ = writeln!(conf, "BasicAuth {user} {password}");
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).expect("write tinyproxy.conf");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr.log");
        let child = Command::new(TINYPROXY_BIN)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {TINYPROXY_BIN} (install tinyproxy): {e}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut t = Tinyproxy { child, addr, dir };
        if let Err(e) = wait_started(&mut t.child, || TcpStream::connect(addr).is_ok()) {
            return Err(format!("tinyproxy on {addr} {e}:\n{}", t.logs()));
        }
        Ok(t)
    }

    /// `http://127.0.0.1:PORT`, for `--proxy` and the `*_proxy` variables.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same with credentials.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    /// The request lines tinyproxy logged (`GET http://... HTTP/1.1`, `CONNECT host:port
    /// HTTP/1.1`), in order.
    pub fn requests(&self) -> Vec<String> {
        let log =
            std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                l.split_once("): ")
                    .filter(|_| l.contains("Request (file descriptor"))
            })
            .map(|(_, req)| req.to_string())
            .collect()
    }

    /// Its log and stderr, for failure messages.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- tinyproxy.log\n{}--- stderr\n{}",
            read("tinyproxy.log"),
            read("stderr.log")
        )
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
