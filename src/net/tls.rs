//! TLS client over [`super::TcpConn`]: a rustls `ClientConnection` fed and drained by hand
//! (`read_tls`/`write_tls` over owned buffers). Config built once: webpki-roots plus
//! `--ca-file`, ALPN `http/1.1`, session resumption cache shared by all workers.

/// Shared TLS client configuration (cheap to clone; `Send + Sync`).
#[derive(Clone)]
pub struct TlsContext {
    _private: (),
}

/// Handshake counters for the end-of-run summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsStats {
    pub full_handshakes: u64,
    pub resumed_handshakes: u64,
}

/// A TLS connection.
pub struct TlsConn {
    _private: (),
}
