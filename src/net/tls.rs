//! TLS client over [`super::TcpConn`] with rustls' unbuffered API (tokio-rustls needs
//! AsyncRead, which tokio-uring does not offer). The config is built once: webpki-roots plus
//! `--ca-file`, ALPN `http/1.1`, ring provider, and one session-resumption cache shared by
//! all workers through the `Arc<ClientConfig>`.
//!
//! A connection is two halves. [`session::Session`] (sans-IO) owns rustls' state machine and
//! every buffer around it, and frees them while the connection waits, so a connection
//! waiting for its response holds rustls' state and keys but no buffer (see that module).
//! [`TlsConn`] moves bytes: `recv` reads the socket into the worker's scratch buffer
//! ([`TcpConn::recv_with`]) and hands them to the session at once, `flush` writes what the
//! session encoded; handshake, reads and writes are loops over the session's answers.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore,
    SignatureScheme,
};

use super::tcp::millis;
use super::{NetError, TcpConn, READ_BUF_SIZE};
use session::{Event, Session};

mod session;

/// TLS sessions remembered for resumption (one entry per server name, the oldest
/// dropped), shared by all workers. A crawl resumes with the hosts it is working on; an
/// entry keeps room for eight tickets with their certificate chains, so a cache as large as a
/// C10K crawl's host count would hold megabytes for sessions never used again.
pub const SESSION_CACHE_SIZE: usize = 1024;
/// ALPN protocol offered: we speak HTTP/1.1 only.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// How long `close` (and a failed handshake) may spend writing close_notify / an alert.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_millis(50);
/// TLS record content types a server may open with (alert, handshake).
const TLS_FIRST_BYTES: [u8; 2] = [0x15, 0x16];
/// Plaintext encrypted per socket write at most (bounds the records buffered for one write).
const MAX_PLAINTEXT_PER_SEND: usize = 64 * 1024;

/// Why a TLS configuration could not be built (one line, for the binary edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read CA file {0}: {1}")]
    CaFile(String, String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Shared TLS client configuration (cheap to clone; `Send + Sync`).
#[derive(Clone)]
pub struct TlsContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    config: Arc<ClientConfig>,
    verified: bool,
    full: AtomicU64,
    resumed: AtomicU64,
}

/// Handshake counters for the end-of-run summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsStats {
    pub full_handshakes: u64,
    pub resumed_handshakes: u64,
}

impl TlsContext {
    /// Trust webpki-roots plus every certificate in `ca_file` (PEM); with `insecure`, accept
    /// any certificate (handshake signatures are still checked) and mark streams unverified.
    pub fn new(ca_file: Option<&Path>, insecure: bool) -> Result<TlsContext, TlsConfigError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            add_pem_roots(&mut roots, path)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Config(e.to_string()))?;
        let mut config = if insecure {
            let verifier = AcceptAnyCert {
                algs: provider.signature_verification_algorithms,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.resumption = Resumption::in_memory_sessions(SESSION_CACHE_SIZE);
        Ok(TlsContext {
            inner: Arc::new(ContextInner {
                config: Arc::new(config),
                verified: !insecure,
                full: AtomicU64::new(0),
                resumed: AtomicU64::new(0),
            }),
        })
    }

    /// Handshakes completed so far through this context (all workers).
    pub fn stats(&self) -> TlsStats {
        TlsStats {
            full_handshakes: self.inner.full.load(Ordering::Relaxed),
            resumed_handshakes: self.inner.resumed.load(Ordering::Relaxed),
        }
    }
}

fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsConfigError> {
    let fail = |why: String| TlsConfigError::CaFile(path.display().to_string(), why);
    let mut added = 0usize;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("bad certificate: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(())
}

/// `--insecure`: any certificate chain is accepted, but the handshake signatures must still
/// be valid for the presented key (so the connection is at least not trivially broken).
#[derive(Debug)]
struct AcceptAnyCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A TLS connection: the socket and the session (see the module doc).
pub struct TlsConn {
    tcp: TcpConn,
    session: Session,
    verified: bool,
    clean_eof: bool,
}

impl TlsConn {
    /// Run the handshake over `tcp` before `deadline`. SNI is `server_name` unless it is an
    /// IP literal (bracketed IPv6 accepted).
    pub async fn handshake(
        tcp: TcpConn,
        ctx: &TlsContext,
        server_name: &str,
        deadline: Instant,
    ) -> Result<TlsConn, NetError> {
        let name = parse_server_name(server_name)?;
        let session = Session::new(ctx.inner.config.clone(), name)
            .map_err(|e| NetError::Tls(format!("cannot start a session: {e}")))?;
        let mut tls = TlsConn {
            tcp,
            session,
            verified: ctx.inner.verified,
            clean_eof: true,
        };
        let start = Instant::now();
        match tls.drive_handshake(server_name, deadline).await {
            Ok(()) => {
                let counter = match tls.session.handshake_kind() {
                    Some(HandshakeKind::Resumed) => &ctx.inner.resumed,
                    _ => &ctx.inner.full,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tls.session.release_idle_buffers();
                Ok(tls)
            }
            Err(NetError::Timeout(_)) => Err(NetError::Tls(format!(
                "handshake timed out after {} ms",
                millis(deadline.saturating_duration_since(start))
            ))),
            Err(e) => {
                if matches!(e, NetError::Tls(_)) {
                    // Let the server know why (the session queued an alert); best effort.
                    let _ = tls.flush(Instant::now() + CLOSE_WRITE_TIMEOUT).await;
                }
                Err(e)
            }
        }
    }

    async fn drive_handshake(&mut self, name: &str, deadline: Instant) -> Result<(), NetError> {
        let mut first_read = true;
        while self.session.is_handshaking() {
            let event = self
                .session
                .process(&mut [])
                .map_err(|e| describe_tls_error(&e, name))?;
            match event {
                Event::NeedInput => {}
                // Plaintext comes after the handshake (the reader takes it).
                Event::Read(_) | Event::Readable => break,
                Event::PeerClosed => return Err(closed_in_handshake()),
            }
            self.flush(deadline).await?;
            // The server's next flight may take a while: wait holding at most a partial
            // record.
            self.session.release_idle_buffers();
            let check = first_read.then_some(TLS_FIRST_BYTES.as_slice());
            if !self.recv(deadline, check).await? {
                return Err(closed_in_handshake());
            }
            first_read = false;
        }
        // Our Finished (and anything else the session queued).
        self.flush(deadline).await
    }

    /// Encrypt and send all of `data`; returns the buffer (cleared) for reuse.
    pub async fn write_all(
        &mut self,
        mut data: Vec<u8>,
        deadline: Instant,
    ) -> Result<Vec<u8>, NetError> {
        for chunk in data.chunks(MAX_PLAINTEXT_PER_SEND) {
            self.session
                .encrypt(chunk)
                .map_err(|e| NetError::Tls(e.to_string()))?;
            self.flush(deadline).await?;
        }
        data.clear();
        Ok(data)
    }

    /// Read plaintext into `buf` (contents replaced; `buf[..n]`). `Ok(0)`: the peer closed,
    /// with close_notify ([`TlsConn::eof_was_clean`] true) or without it (false).
    pub async fn read(
        &mut self,
        mut buf: Vec<u8>,
        deadline: Instant,
    ) -> (Result<usize, NetError>, Vec<u8>) {
        if buf.capacity() == 0 {
            buf.reserve_exact(READ_BUF_SIZE);
        }
        buf.clear();
        buf.resize(buf.capacity(), 0);
        let res = self.read_into(&mut buf, deadline).await;
        buf.truncate(*res.as_ref().unwrap_or(&0));
        (res, buf)
    }

    /// Like [`TlsConn::read`], but the caller's buffer is taken only once there is plaintext
    /// for it (or the stream ended). Until then the connection moves network bytes into the
    /// session itself, holding no buffer while it waits: the socket is read into the
    /// worker's scratch buffer ([`TcpConn::recv_with`]) and the session keeps at most a
    /// partial record. Records without plaintext (TLS 1.3 session tickets, say) are handled
    /// here without taking the caller's buffer.
    pub async fn read_ready(
        &mut self,
        take: impl FnOnce() -> Vec<u8>,
        deadline: Instant,
    ) -> (Result<usize, NetError>, Vec<u8>) {
        loop {
            match self.session.process(&mut []) {
                Ok(Event::Readable | Event::Read(_)) => break,
                Ok(Event::PeerClosed) => {
                    self.clean_eof = true;
                    return (Ok(0), Vec::new());
                }
                Ok(Event::NeedInput) => {}
                Err(e) => return (Err(describe_tls_error(&e, "the server")), Vec::new()),
            }
            if let Err(e) = self.flush(deadline).await {
                return (Err(e), Vec::new());
            }
            self.session.release_idle_buffers();
            match self.recv(deadline, None).await {
                Ok(true) => {}
                Ok(false) => {
                    self.clean_eof = false;
                    return (Ok(0), Vec::new());
                }
                Err(e) => return (Err(e), Vec::new()),
            }
        }
        // Plaintext is waiting: taken out without awaiting anything, so this future does
        // not carry a read's state (it is part of every TLS response wait).
        let mut buf = take();
        if buf.capacity() == 0 {
            buf.reserve_exact(READ_BUF_SIZE);
        }
        buf.clear();
        buf.resize(buf.capacity(), 0);
        let res = match self.session.process(&mut buf) {
            Ok(Event::Read(n)) => Ok(n),
            Ok(Event::PeerClosed) => {
                self.clean_eof = true;
                Ok(0)
            }
            // Not expected with plaintext waiting; the full read covers it (boxed: rare).
            Ok(Event::Readable | Event::NeedInput) => {
                return Box::pin(self.read(buf, deadline)).await;
            }
            Err(e) => Err(describe_tls_error(&e, "the server")),
        };
        buf.truncate(*res.as_ref().unwrap_or(&0));
        (res, buf)
    }

    async fn read_into(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, NetError> {
        loop {
            let event = self
                .session
                .process(buf)
                .map_err(|e| describe_tls_error(&e, "the server"))?;
            match event {
                Event::Read(n) => return Ok(n),
                // Only for an empty `buf`.
                Event::Readable => return Ok(0),
                Event::PeerClosed => {
                    self.clean_eof = true;
                    return Ok(0);
                }
                Event::NeedInput => {}
            }
            // Post-handshake messages may need an answer (a KeyUpdate, say).
            self.flush(deadline).await?;
            if !self.recv(deadline, None).await? {
                self.clean_eof = false;
                return Ok(0);
            }
        }
    }

    /// Drop the session's buffers where they hold nothing (an idle pooled connection keeps
    /// at most a partial record; the next read allocates again).
    pub fn release_idle_buffers(&mut self) {
        self.session.release_idle_buffers();
    }

    /// After a read returned 0: whether the server sent close_notify.
    pub fn eof_was_clean(&self) -> bool {
        self.clean_eof
    }

    pub fn peer(&self) -> SocketAddr {
        self.tcp.peer()
    }

    /// Whether the certificate chain was verified (false under `--insecure`).
    pub fn verified(&self) -> bool {
        self.verified
    }

    /// The ALPN protocol the server chose, if any.
    #[cfg(test)]
    pub fn alpn(&self) -> Option<&[u8]> {
        self.session.alpn()
    }

    /// Send close_notify (best effort, briefly) and shut the socket down.
    pub async fn close(mut self) {
        if self.session.close_notify().is_ok() {
            let _ = self.flush(Instant::now() + CLOSE_WRITE_TIMEOUT).await;
        }
        self.tcp.shutdown();
    }

    /// Session -> socket: write every record the session has encoded. The buffer is let go
    /// once written (the next records get one of their size).
    async fn flush(&mut self, deadline: Instant) -> Result<(), NetError> {
        if self.session.outgoing().is_empty() {
            return Ok(());
        }
        let (res, _) = self
            .tcp
            .write_all(self.session.take_outgoing(), deadline)
            .await;
        res
    }

    /// Socket -> session: wait until the socket has bytes, read them into the worker's
    /// scratch buffer ([`TcpConn::recv_with`]) and append them to the session's received
    /// bytes at once (nothing is lent to the kernel across the wait). With `first`, the
    /// first byte must be one of those (a TLS record type). `Ok(false)`: the socket ended.
    async fn recv(&mut self, deadline: Instant, first: Option<&[u8]>) -> Result<bool, NetError> {
        let session = &mut self.session;
        let got = self
            .tcp
            .recv_with(deadline, |bytes: &[u8]| {
                if first.is_some_and(|ok| !ok.contains(&bytes[0])) {
                    return Err(NetError::Tls("not TLS (plain HTTP server?)".into()));
                }
                session.received(bytes);
                Ok(())
            })
            .await?;
        got.map_or(Ok(false), |fed| fed.map(|()| true))
    }
}

fn closed_in_handshake() -> NetError {
    NetError::Tls("connection closed by the server during the handshake".into())
}

/// The SNI / verification name: a DNS name, or an IP literal (no SNI is sent for those).
fn parse_server_name(name: &str) -> Result<ServerName<'static>, NetError> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.to_string())
        .map_err(|_| NetError::Tls(format!("invalid server name {name:?}")))
}

/// One line saying which TLS failure this is.
fn describe_tls_error(e: &rustls::Error, name: &str) -> NetError {
    use rustls::Error as E;
    let msg = match e {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "certificate signed by an unknown issuer (self-signed or private CA? see --ca-file)"
                    .to_string()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate is not valid yet".to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("certificate is not valid for {name}")
            }
            CertificateError::Revoked => "certificate has been revoked".to_string(),
            other => format!("invalid certificate: {other:?}"),
        },
        E::AlertReceived(alert) => format!("server sent alert {alert:?}"),
        E::InvalidMessage(m) => format!("protocol error: invalid message {m:?}"),
        E::PeerIncompatible(p) => format!("no common protocol with the server: {p:?}"),
        E::NoApplicationProtocol => "server does not speak http/1.1 (ALPN)".to_string(),
        other => other.to_string(),
    };
    NetError::Tls(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_send_sync_and_shares_config() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TlsContext>();
        let ctx = TlsContext::new(None, false).unwrap();
        let copy = ctx.clone();
        assert!(Arc::ptr_eq(&ctx.inner.config, &copy.inner.config));
        assert_eq!(ctx.inner.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(ctx.inner.verified);
        assert!(!TlsContext::new(None, true).unwrap().inner.verified);
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            parse_server_name("example.com").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            parse_server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            parse_server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(parse_server_name("bad name!").is_err());
    }

    #[test]
    fn ca_file_errors_are_one_line() {
        let e = TlsContext::new(Some(Path::new("/nonexistent/ca.pem")), false)
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("cannot read CA file /nonexistent/ca.pem"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "not a pem\n").unwrap();
        let e = TlsContext::new(Some(&p), false).err().unwrap();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    // ---- end-to-end over loopback: rustls server threads, certificates made by rcgen ----

    use crate::error::ErrorKind;
    use crate::net::{ConnectOptions, Stream};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::pki_types::PrivateKeyDer;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::rc::Rc;
    use std::thread;

    type Chain = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);
    /// Per connection: the SNI the client sent, or why the exchange failed.
    type ServerThread = thread::JoinHandle<Vec<Result<Option<String>, String>>>;

    struct Pki {
        _dir: tempfile::TempDir,
        ca_file: PathBuf,
        ca: rcgen::Certificate,
        ca_key: KeyPair,
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ringcrawl test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            _dir: dir,
            ca_file,
            ca,
            ca_key,
        }
    }

    fn leaf(pki: &Pki, names: &[&str], expired: bool) -> Chain {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &pki.ca, &pki.ca_key).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }

    fn self_signed(names: &[&str]) -> Chain {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }

    const BODY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

    /// Serves `conns` TLS connections one after the other: reads a request head, answers
    /// [`BODY`], then closes with or without close_notify. Returns the SNI seen per
    /// connection (`Err` for a failed handshake).
    fn tls_server(chain: Chain, conns: usize, close_notify: bool) -> (SocketAddr, ServerThread) {
        tls_server_replying(chain, conns, close_notify, BODY.to_vec(), Duration::ZERO)
    }

    /// As [`tls_server`], answering `reply` once `delay` has passed after the request.
    fn tls_server_replying(
        chain: Chain,
        conns: usize,
        close_notify: bool,
        reply: Vec<u8>,
        delay: Duration,
    ) -> (SocketAddr, ServerThread) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain.0, chain.1)
            .unwrap();
        cfg.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        let cfg = Arc::new(cfg);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            (0..conns)
                .map(|_| {
                    let (tcp, _) = listener.accept().unwrap();
                    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match tls.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            Ok(_) => return Err("EOF before request".to_string()),
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    thread::sleep(delay);
                    tls.write_all(&reply).map_err(|e| e.to_string())?;
                    if close_notify {
                        tls.conn.send_close_notify();
                    }
                    tls.flush().map_err(|e| e.to_string())?;
                    while tls.conn.wants_write() {
                        tls.conn
                            .write_tls(&mut tls.sock)
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(tls.conn.server_name().map(str::to_string))
                })
                .collect()
        });
        (addr, handle)
    }

    fn opts() -> ConnectOptions {
        ConnectOptions {
            connect_timeout: Duration::from_millis(1500),
            bind: Rc::from([]),
        }
    }

    struct Got {
        body: Vec<u8>,
        clean: bool,
        verified: Option<bool>,
        alpn: Option<Vec<u8>>,
    }

    /// GET over TLS to `addr` as `name`, reading until EOF.
    async fn get(ctx: &TlsContext, addr: SocketAddr, name: &str) -> Result<Got, NetError> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut s = Stream::connect(&[addr], &opts(), Some((ctx, name)), deadline).await?;
        let alpn = match &s {
            Stream::Tls(t) => t.alpn().map(<[u8]>::to_vec),
            Stream::Plain(_) => None,
        };
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), deadline)
            .await?;
        let mut body = Vec::new();
        let mut buf = Vec::with_capacity(READ_BUF_SIZE);
        loop {
            let (res, b) = s.read(buf, deadline).await;
            buf = b;
            match res? {
                0 => break,
                n => body.extend_from_slice(&buf[..n]),
            }
        }
        let got = Got {
            body,
            clean: s.eof_was_clean(),
            verified: s.tls_verified(),
            alpn,
        };
        s.close().await;
        Ok(got)
    }

    fn tls_message(r: Result<Got, NetError>) -> String {
        match r {
            Ok(_) => panic!("expected a TLS error"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{msg}");
                msg
            }
        }
    }

    #[test]
    fn private_ca_ok_with_close_notify_and_resumption() {
        let pki = pki();
        let (addr, server) = tls_server(leaf(&pki, &["localhost"], false), 2, true);
        let ctx = TlsContext::new(Some(&pki.ca_file), false).unwrap();
        tokio_uring::start(async {
            for _ in 0..2 {
                let got = get(&ctx, addr, "localhost").await.unwrap();
                assert_eq!(got.body, BODY);
                assert!(got.clean, "close_notify was sent");
                assert_eq!(got.verified, Some(true));
                assert_eq!(got.alpn.as_deref(), Some(ALPN_HTTP11));
            }
        });
        let snis = server.join().unwrap();
        assert_eq!(
            snis,
            vec![
                Ok(Some("localhost".to_string())),
                Ok(Some("localhost".to_string()))
            ]
        );
        let stats = ctx.stats();
        assert_eq!((stats.full_handshakes, stats.resumed_handshakes), (1, 1));
    }

    #[test]
    fn large_response_crosses_many_reads() {
        // 1 MiB + change: many records per socket read, rustls' plaintext buffer fills up.
        let big: Vec<u8> = (0..(1 << 20) + 777).map(|i| (i % 251) as u8).collect();
        let pki = pki();
        let (addr, server) = tls_server_replying(
            leaf(&pki, &["localhost"], false),
            1,
            true,
            big.clone(),
            Duration::ZERO,
        );
        let ctx = TlsContext::new(Some(&pki.ca_file), false).unwrap();
        tokio_uring::start(async {
            let got = get(&ctx, addr, "localhost").await.unwrap();
            assert_eq!(got.body.len(), big.len());
            assert!(got.body == big, "bytes differ");
            assert!(got.clean);
        });
        server.join().unwrap();
    }

    /// read_ready over TLS: no plaintext buffer is taken while the server is silent, and a
    /// 1 MiB answer that follows is read to the last byte (no readiness edge is lost between
    /// the TLS layer's wait and its socket reads).
    #[test]
    fn read_ready_over_tls_takes_a_buffer_only_when_data_is_there() {
        const DELAY: Duration = Duration::from_millis(200);
        let big: Vec<u8> = (0..(1 << 20) + 333).map(|i| (i % 241) as u8).collect();
        let pki = pki();
        let chain = leaf(&pki, &["localhost"], false);
        let (addr, server) = tls_server_replying(chain, 1, true, big.clone(), DELAY);
        let ctx = TlsContext::new(Some(&pki.ca_file), false).unwrap();
        tokio_uring::start(async {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut s = Stream::connect(&[addr], &opts(), Some((&ctx, "localhost")), deadline)
                .await
                .unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), deadline)
                .await
                .unwrap();
            let (body, waited) =
                crate::net::tests::read_to_end_ready(&mut s, READ_BUF_SIZE, deadline).await;
            assert!(
                waited >= DELAY - Duration::from_millis(20),
                "taken after {waited:?}"
            );
            assert_eq!(body.len(), big.len());
            assert!(body == big, "bytes differ");
            assert!(s.eof_was_clean());
        });
        server.join().unwrap().pop().unwrap().unwrap();
    }

    #[test]
    fn ip_literal_sends_no_sni() {
        let pki = pki();
        let (addr, server) = tls_server(leaf(&pki, &["127.0.0.1"], false), 1, true);
        let ctx = TlsContext::new(Some(&pki.ca_file), false).unwrap();
        tokio_uring::start(async {
            let got = get(&ctx, addr, "127.0.0.1").await.unwrap();
            assert_eq!(got.body, BODY);
        });
        assert_eq!(server.join().unwrap(), vec![Ok(None)]);
    }

    #[test]
    fn truncation_without_close_notify_is_eof_not_error() {
        let pki = pki();
        let (addr, server) = tls_server(leaf(&pki, &["localhost"], false), 1, false);
        let ctx = TlsContext::new(Some(&pki.ca_file), false).unwrap();
        tokio_uring::start(async {
            let got = get(&ctx, addr, "localhost").await.unwrap();
            assert_eq!(got.body, BODY);
            assert!(!got.clean);
        });
        server.join().unwrap();
    }

    #[test]
    fn unknown_issuer_without_ca_file() {
        let pki = pki();
        let (addr, server) = tls_server(leaf(&pki, &["localhost"], false), 1, true);
        let ctx = TlsContext::new(None, false).unwrap();
        let msg = tokio_uring::start(async { tls_message(get(&ctx, addr, "localhost").await) });
        assert!(msg.contains("unknown issuer"), "{msg}");
        assert!(server.join().unwrap()[0].is_err());
    }

    #[test]
    fn expired_certificate() {
        let pki = pki();
        let (addr, server) = tls_server(leaf(&pki, &["localhost"], true), 1, true);
        let ctx = TlsContext::new(Some(&pki.ca_file), false).unwrap();
        let msg = tokio_uring::start(async { tls_message(get(&ctx, addr, "localhost").await) });
        assert_eq!(msg, "TLS: certificate has expired");
        server.join().unwrap();
    }

    #[test]
    fn wrong_name() {
        let pki = pki();
        let (addr, server) = tls_server(leaf(&pki, &["other.test"], false), 1, true);
        let ctx = TlsContext::new(Some(&pki.ca_file), false).unwrap();
        let msg = tokio_uring::start(async { tls_message(get(&ctx, addr, "localhost").await) });
        assert_eq!(msg, "TLS: certificate is not valid for localhost");
        server.join().unwrap();
    }

    #[test]
    fn self_signed_is_unknown_issuer_but_insecure_accepts_it() {
        let (addr, server) = tls_server(self_signed(&["localhost"]), 2, true);
        let pki = pki(); // an unrelated CA: must not help
        let strict = TlsContext::new(Some(&pki.ca_file), false).unwrap();
        let insecure = TlsContext::new(None, true).unwrap();
        tokio_uring::start(async {
            let msg = tls_message(get(&strict, addr, "localhost").await);
            assert!(msg.contains("unknown issuer"), "{msg}");
            let got = get(&insecure, addr, "localhost").await.unwrap();
            assert_eq!(got.body, BODY);
            assert_eq!(got.verified, Some(false));
        });
        let seen = server.join().unwrap();
        assert!(seen[0].is_err() && seen[1].is_ok(), "{seen:?}");
    }

    #[test]
    fn plain_http_port_is_not_tls() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.read(&mut [0u8; 512]);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        });
        let ctx = TlsContext::new(None, false).unwrap();
        let msg = tokio_uring::start(async { tls_message(get(&ctx, addr, "localhost").await) });
        assert_eq!(msg, "TLS: not TLS (plain HTTP server?)");
        server.join().unwrap();
    }

    #[test]
    fn silent_server_is_a_handshake_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // Holds the connection (reading the ClientHello) until the client gives up.
            while matches!(s.read(&mut [0u8; 512]), Ok(n) if n > 0) {}
        });
        let ctx = TlsContext::new(None, false).unwrap();
        tokio_uring::start(async {
            let o = ConnectOptions {
                connect_timeout: Duration::from_millis(200),
                bind: Rc::from([]),
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            let started = Instant::now();
            let err = Stream::connect(&[addr], &o, Some((&ctx, "localhost")), deadline)
                .await
                .err()
                .unwrap();
            assert!(started.elapsed() < Duration::from_secs(2));
            assert_eq!(err.kind(), ErrorKind::Tls);
            assert!(
                err.to_string()
                    .starts_with("TLS: handshake timed out after "),
                "{err}"
            );
        });
        server.join().unwrap();
    }
}
