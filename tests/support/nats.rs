//! A real NATS server with JetStream (Debian's `nats-server`, `/usr/sbin/nats-server -js`) on
//! 127.0.0.1:<free port>, its store in a tempdir. Killed on drop. [`NatsServer::start_secure`]
//! starts one that only speaks TLS and only lets in users with a credentials file: operator
//! mode, with an operator, an account (JetStream enabled) and a user made here with `nkeys`
//! and signed as NATS JWTs, the account preloaded into a memory resolver.
//! [`NatsServer::start_monitored`] starts one with its HTTP monitoring port too, so a test can
//! see the streams the server holds ([`NatsServer::streams`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine as _;

use super::{free_port, wait_started, TlsCerts};

pub const NATS_BIN: &str = "/usr/sbin/nats-server";
/// Starts tried when a free port was taken before the server bound it.
const START_ATTEMPTS: usize = 3;
/// The credentials file of a secure server's user, in the server's directory.
const CREDS: &str = "node.creds";

pub struct NatsServer {
    child: Child,
    pub port: u16,
    /// The HTTP monitoring port, when it has one.
    monitor: Option<u16>,
    dir: tempfile::TempDir,
    /// The server's configuration file, when it has one (TLS and credentials).
    conf: Option<PathBuf>,
}

/// A stream as the monitoring port shows it.
#[derive(Debug)]
pub struct StreamState {
    pub subjects: Vec<String>,
    /// Its last sequence number: the messages it ever stored (a message published again
    /// within the duplicate window is not stored again).
    pub last_seq: u64,
}

/// What a client of a [`NatsServer::start_secure`] server needs.
pub struct Secure {
    /// The user's credentials file (its JWT and nkey seed).
    pub creds: PathBuf,
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
}

impl NatsServer {
    /// Start a JetStream server with an empty store.
    pub fn start() -> NatsServer {
        NatsServer::start_with(false, |_| None)
    }

    /// Start a JetStream server with an empty store and its HTTP monitoring port open.
    pub fn start_monitored() -> NatsServer {
        NatsServer::start_with(true, |_| None)
    }

    /// [`NatsServer::try_start_with`] up to [`START_ATTEMPTS`] times (a free port may be taken
    /// before the server binds it).
    fn start_with(monitor: bool, conf: impl Fn(&Path) -> Option<PathBuf>) -> NatsServer {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match NatsServer::try_start_with(monitor, &conf) {
                Ok(n) => return n,
                Err(logs) => last = logs,
            }
        }
        panic!("nats-server did not start in {START_ATTEMPTS} attempts:\n{last}");
    }

    /// Start a server (`conf` may write a configuration file into the server's directory),
    /// with a monitoring port if `monitor`; `Err`: its log.
    fn try_start_with(
        monitor: bool,
        conf: impl Fn(&Path) -> Option<PathBuf>,
    ) -> Result<NatsServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("ringcrawl-nats")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let monitor = monitor.then(free_port);
        let conf = conf(dir.path());
        let child = spawn(&dir, port, monitor, conf.as_deref());
        let mut n = NatsServer {
            child,
            port,
            monitor,
            dir,
            conf,
        };
        n.wait_up()?;
        Ok(n)
    }

    /// Start a JetStream server that speaks only TLS (its certificate the valid leaf of
    /// `certs`) and admits only the user of the returned credentials file.
    pub fn start_secure(certs: &TlsCerts) -> (NatsServer, Secure) {
        let n = NatsServer::start_with(false, |dir| {
            let (conf, user) = operator_conf(dir, certs);
            std::fs::write(dir.join(CREDS), user).expect("write the credentials file");
            Some(conf)
        });
        let secure = Secure {
            creds: n.dir.path().join(CREDS),
            ca: certs.ca.clone(),
        };
        (n, secure)
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
        self.child = spawn(&self.dir, self.port, self.monitor, self.conf.as_deref());
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

    /// The streams the server holds (key-value buckets included: `KV_NAME`) by name, from the
    /// monitoring port's `/jsz` (a server of [`NatsServer::start_monitored`]).
    pub fn streams(&self) -> BTreeMap<String, StreamState> {
        let port = self
            .monitor
            .expect("a server started with its monitoring port");
        let jsz = http_get(port, "/jsz?streams=true&config=true");
        let jsz: serde_json::Value =
            serde_json::from_str(&jsz).unwrap_or_else(|e| panic!("/jsz is not JSON ({e}): {jsz}"));
        let mut out = BTreeMap::new();
        for account in jsz["account_details"].as_array().into_iter().flatten() {
            for s in account["stream_detail"].as_array().into_iter().flatten() {
                let subjects = s["config"]["subjects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect();
                let state = StreamState {
                    subjects,
                    last_seq: s["state"]["last_seq"].as_u64().unwrap_or(0),
                };
                out.insert(s["name"].as_str().unwrap().to_string(), state);
            }
        }
        out
    }
}

/// The body of `GET PATH` on the monitoring port 127.0.0.1:`port` (HTTP/1.0: the body is
/// neither chunked nor kept alive, it ends where the connection does).
fn http_get(port: u16, path: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the monitoring port");
    write!(c, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_string()
}

/// `nats-server -js` on 127.0.0.1:`port`, its store and log in `dir` (the log appended to),
/// its monitoring port `monitor` if any, with the configuration file `conf` if any.
fn spawn(dir: &tempfile::TempDir, port: u16, monitor: Option<u16>, conf: Option<&Path>) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("server.log"))
        .expect("server.log");
    let mut cmd = Command::new(NATS_BIN);
    if let Some(conf) = conf {
        cmd.arg("-c").arg(conf);
    }
    if let Some(m) = monitor {
        cmd.args(["-m", &m.to_string()]);
    }
    cmd.arg("-js")
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

/// A NATS JWT (`typ` JWT, `alg` ed25519-nkey) about `subject`, named `name`, with `nats` in
/// its claims, issued and signed by `issuer`.
fn jwt(
    issuer: &nkeys::KeyPair,
    subject: &nkeys::KeyPair,
    name: &str,
    nats: serde_json::Value,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("RINGCRAWLTEST{now}{name}").to_uppercase(),
        "iat": now,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject.public_key(),
        "nats": nats,
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = b64.encode(claims.to_string());
    let signed = format!("{head}.{body}");
    let sig = issuer.sign(signed.as_bytes()).expect("sign a JWT");
    format!("{signed}.{}", b64.encode(sig))
}

/// An operator-mode configuration file in `dir` (TLS with the valid leaf of `certs`; one
/// account with JetStream and the system account, both preloaded; the address and port are
/// `spawn`'s flags), and the account's one user's credentials file text.
fn operator_conf(dir: &Path, certs: &TlsCerts) -> (PathBuf, String) {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let system = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let op_jwt = jwt(
        &operator,
        &operator,
        "ringcrawl-test-operator",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let acct_jwt = jwt(
        &operator,
        &account,
        "ringcrawl",
        serde_json::json!({
            "limits": unlimited,
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account",
            "version": 2,
        }),
    );
    // JetStream needs a system account (no JetStream of its own).
    let sys_jwt = jwt(
        &operator,
        &system,
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    let user_jwt = jwt(
        &account,
        &user,
        "node",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        }),
    );
    let conf = dir.join("server.conf");
    let text = format!(
        "operator: \"{op_jwt}\"\n\
         resolver: MEMORY\n\
         system_account: {sys}\n\
         resolver_preload: {{\n  {acct}: \"{acct_jwt}\"\n  {sys}: \"{sys_jwt}\"\n}}\n\
         tls {{\n  cert_file: \"{cert}\"\n  key_file: \"{key}\"\n}}\n",
        acct = account.public_key(),
        sys = system.public_key(),
        cert = certs.leaf.cert.display(),
        key = certs.leaf.key.display(),
    );
    std::fs::write(&conf, text).expect("write server.conf");
    let seed = user.seed().expect("user seed");
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    );
    (conf, creds)
}
