//! A real nginx (Debian's nginx-light, `/usr/sbin/nginx`) serving a generated [`Site`] on
//! 127.0.0.1, unprivileged paths only: config, pid, logs and temp dirs live in a tempdir.
//! Optionally a TLS listener with given certificates (plus extra `server_name`s with their
//! own, deliberately bad, certificates). Killed on drop.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::site::Site;
use super::{free_port, running_as_root, wait_started, wait_until, SERVER_START_TIMEOUT};

/// The nginx binary (package nginx-light).
pub const NGINX_BIN: &str = "/usr/sbin/nginx";
/// Open files per worker; more than the suite's connections.
const WORKER_RLIMIT_NOFILE: u32 = 65_536;
const WORKER_CONNECTIONS: u32 = 16_384;
/// Starts tried when a free port was taken before nginx bound it.
const START_ATTEMPTS: usize = 3;
/// Path on every site host whose page title shows request headers as the server got them.
pub const ECHO_HEADERS_PATH: &str = "/echo-headers";
/// The location serving [`ECHO_HEADERS_PATH`]: title `x-a=[..] pa=[..] ua=[..]` with the
/// `X-A`, `Proxy-Authorization` and `User-Agent` headers received.
const ECHO_HEADERS: &str = "    location = /echo-headers {\n      default_type text/html;\n      \
     return 200 \"<title>x-a=[$http_x_a] pa=[$http_proxy_authorization] ua=[$http_user_agent]</title>\";\n    }\n";

/// TLS setup: the default certificate for every site host, and extra virtual hosts with
/// their own certificate (expired, wrong name, self-signed...).
#[derive(Clone, Debug)]
pub struct NginxTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// (server_name, cert, key); each serves a page with title "TLS <server_name>".
    pub extra: Vec<(String, PathBuf, PathBuf)>,
}

/// A running nginx.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub tls_port: Option<u16>,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Start nginx serving `site` (over http on `port`, and https on `tls_port` when `tls`).
    /// A port taken between [`free_port`] and nginx's bind is retried with new ports.
    pub fn start(site: &Site, tls: Option<&NginxTls>) -> Nginx {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Nginx::try_start(site, tls) {
                Ok(n) => return n,
                Err(logs) if logs.contains("Address already in use") => last = logs,
                Err(logs) => panic!("nginx did not start:\n{logs}"),
            }
        }
        panic!("nginx found no free port in {START_ATTEMPTS} attempts:\n{last}");
    }

    fn try_start(site: &Site, tls: Option<&NginxTls>) -> Result<Nginx, String> {
        let dir = tempfile::Builder::new()
            .prefix("ringcrawl-nginx")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let tls_port = tls.map(|_| free_port());
        let conf = config(dir.path(), site, port, tls.zip(tls_port));
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr.log");
        // `-e` sets the error log used before the config is read (nginx >= 1.19.5), so no
        // write to /var/log/nginx is attempted; `-p` makes default temp paths relative.
        let child = Command::new(NGINX_BIN)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {NGINX_BIN} (install nginx-light): {e}"));
        let mut nginx = Nginx {
            child,
            port,
            tls_port,
            dir,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let started = wait_started(&mut nginx.child, || {
            TcpStream::connect(addr).is_ok()
                && tls_port.is_none_or(|p| TcpStream::connect(("127.0.0.1", p)).is_ok())
        });
        if let Err(e) = started {
            return Err(format!("nginx on {addr} {e}:\n{}", nginx.logs()));
        }
        Ok(nginx)
    }

    /// The error log and stderr, for failure messages.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- error.log\n{}--- stderr\n{}",
            read("error.log"),
            read("stderr.log")
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// How long nginx gets to stop its workers after SIGTERM before it is killed.
const NGINX_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits. A SIGKILLed master leaves its
        // workers running (they do not notice), so that is only the fallback.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of our own child, not yet reaped (so not reused).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let stopped = wait_until(NGINX_STOP_TIMEOUT, || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn config(dir: &Path, site: &Site, port: u16, tls: Option<(&NginxTls, u16)>) -> String {
    let d = dir.display();
    let mut c = String::new();
    if running_as_root() {
        // Workers must read the tempdir (mode 0700) that root created.
        c.push_str("user root;\n");
    }
    let _ = write!(
        c,
        "daemon off;\nmaster_process on;\nworker_processes 2;\nworker_rlimit_nofile {WORKER_RLIMIT_NOFILE};\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections {WORKER_CONNECTIONS}; multi_accept on; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nodelay on;\n\
         keepalive_timeout 60s;\n  keepalive_requests 100000;\n\
         server_names_hash_max_size 131072;\n  server_names_hash_bucket_size 128;\n\
         client_body_temp_path {d}/client_body;\n\
         types {{\n    text/html html;\n    \"text/html; charset=utf-8\" hu8;\n    \
         \"text/html; charset=iso-8859-1\" hl1;\n    image/png png;\n  }}\n\
         default_type application/octet-stream;\n  charset off;\n"
    );
    let listen = |c: &mut String, extra: &str| {
        let _ = writeln!(c, "    listen 127.0.0.1:{port}{extra};");
        if let Some((_, tls_port)) = tls {
            let _ = writeln!(c, "    listen 127.0.0.1:{tls_port} ssl{extra};");
        }
    };
    if let Some((t, _)) = tls {
        let _ = writeln!(c, "  ssl_certificate {};", t.cert.display());
        let _ = writeln!(c, "  ssl_certificate_key {};", t.key.display());
        c.push_str("  ssl_protocols TLSv1.2 TLSv1.3;\n  ssl_session_cache shared:SSL:10m;\n");
    }
    // Unknown Host: an empty 421, so a wrong Host header never looks like success.
    c.push_str("  server {\n");
    listen(&mut c, " default_server");
    c.push_str("    server_name _;\n    return 421;\n  }\n");
    for host in &site.hosts {
        c.push_str("  server {\n");
        listen(&mut c, "");
        let _ = writeln!(
            c,
            "    server_name {} {};",
            host.name,
            host.aliases.join(" ")
        );
        let _ = writeln!(c, "    root {};", host.root.display());
        c.push_str("    index index.html;\n    error_page 404 /404.html;\n");
        c.push_str(ECHO_HEADERS);
        for r in &host.redirects {
            let _ = writeln!(
                c,
                "    location = {} {{ return {} {}; }}",
                r.path, r.status, r.target
            );
        }
        c.push_str("  }\n");
    }
    if let Some((t, _)) = tls {
        for (name, cert, key) in &t.extra {
            let root = dir.join("tls-extra").join(name);
            std::fs::create_dir_all(&root).expect("mkdir tls-extra");
            let page =
                format!("<!DOCTYPE html><html><head><title>TLS {name}</title></head></html>\n");
            std::fs::write(root.join("index.html"), page).expect("write tls-extra page");
            c.push_str("  server {\n");
            listen(&mut c, "");
            let _ = writeln!(c, "    server_name {name};");
            let _ = writeln!(c, "    ssl_certificate {};", cert.display());
            let _ = writeln!(c, "    ssl_certificate_key {};", key.display());
            let _ = writeln!(c, "    root {};\n  }}", root.display());
        }
    }
    c.push_str("}\n");
    c
}
