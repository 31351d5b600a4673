//! A real dnsmasq (package dnsmasq-base) on 127.0.0.1:<free port>, UDP and TCP, answering
//! the given names with 127.0.0.1 from a hosts file, NXDOMAIN for every other `.test` name,
//! and a TXT-only name (`noaddr.test`) for "no address". Killed on drop.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::dns::query_a;
use super::{free_port, running_as_root, wait_started, wait_until, SERVER_START_TIMEOUT};

pub const DNSMASQ_BIN: &str = "/usr/sbin/dnsmasq";
/// A name that exists (TXT record) but has no A/AAAA address.
pub const NO_ADDRESS_NAME: &str = "noaddr.test";
/// A name under the local-only domain that does not exist.
pub const NXDOMAIN_NAME: &str = "does-not-exist.test";
/// Starts tried when a free port was taken before dnsmasq bound it.
const START_ATTEMPTS: usize = 3;

pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Start dnsmasq resolving each of `names` to 127.0.0.1. A port taken between
    /// [`free_port`] and dnsmasq's bind is retried with a new port.
    pub fn start(names: &[String]) -> Dnsmasq {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Dnsmasq::try_start(names) {
                Ok(d) => return d,
                Err(logs) if logs.contains("Address already in use") => last = logs,
                Err(logs) => panic!("dnsmasq did not start:\n{logs}"),
            }
        }
        panic!("dnsmasq found no free port in {START_ATTEMPTS} attempts:\n{last}");
    }

    fn try_start(names: &[String]) -> Result<Dnsmasq, String> {
        let dir = tempfile::Builder::new()
            .prefix("ringcrawl-dnsmasq")
            .tempdir()
            .expect("tempdir");
        let mut hosts = String::new();
        for n in names {
            let _ = writeln!(hosts, "127.0.0.1 {n}");
        }
        let hosts_path = dir.path().join("hosts");
        std::fs::write(&hosts_path, hosts).expect("write hosts");
        let port = free_port();
        let mut cmd = Command::new(DNSMASQ_BIN);
        cmd.arg("--keep-in-foreground")
            .arg("--log-facility=-")
            .arg(format!("--port={port}"))
            .arg("--listen-address=127.0.0.1")
            .arg("--bind-interfaces")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg("--no-negcache")
            .arg("--pid-file")
            .arg("--cache-size=10000")
            .arg(format!("--addn-hosts={}", hosts_path.display()))
            .arg("--local=/test/")
            .arg(format!("--txt-record={NO_ADDRESS_NAME},no address here"));
        if running_as_root() {
            // Otherwise dnsmasq drops to `nobody`, who cannot read the 0700 tempdir.
            cmd.arg("--user=root").arg("--group=root");
        }
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr.log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {DNSMASQ_BIN} (install dnsmasq-base): {e}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut d = Dnsmasq { child, addr, dir };
        let probe = names
            .first()
            .map_or(NXDOMAIN_NAME, |n| n.as_str())
            .to_string();
        let started = wait_started(&mut d.child, || {
            query_a(addr, &probe, Duration::from_millis(200)).is_ok()
        });
        if let Err(e) = started {
            return Err(format!("dnsmasq on {addr} {e}:\n{}", d.logs()));
        }
        Ok(d)
    }

    /// `IP:PORT` for `--resolver`.
    pub fn resolver_arg(&self) -> String {
        self.addr.to_string()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
