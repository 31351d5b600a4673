//! The sans-IO half of a TLS connection: rustls' unbuffered client state machine and the
//! three buffers around it, which this type owns and sizes itself. It is fed received bytes
//! ([`Session::received`]), asked for plaintext ([`Session::process`]) or to encrypt
//! ([`Session::encrypt`]), and leaves the records to send in [`Session::outgoing`]; the
//! socket side is `super::TlsConn`.
//!
//! Memory is the point of doing this by hand: rustls' buffered `ClientConnection` keeps a
//! receive buffer of at least 4 KiB per connection once it has read anything, and a crawler
//! holds thousands of connections that are only waiting for their server. Here:
//! - `incoming` holds received bytes rustls has not consumed yet: between reads that is at
//!   most a partial record (or the records after one whose plaintext is waiting for the
//!   reader), and [`Session::release_idle_buffers`] frees it when empty or trims it to that
//!   partial record, so a connection waiting for its response holds no receive buffer.
//! - rustls decrypts each record in place in `incoming` and hands out its plaintext, one
//!   record at a time, which is copied into the reader's buffer. A record is taken out of
//!   rustls only when the reader has room for it (or, when it is larger than the reader's
//!   whole buffer, for its first part: the rest is kept in `plain`, read from `plain_pos`,
//!   until the next read), so asking with no buffer copies nothing.
//! - `outgoing` holds encoded records until the socket side takes them
//!   ([`Session::take_outgoing`]), which lets go of the buffer with them.

use std::num::NonZeroUsize;
use std::sync::Arc;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus, WriteTraffic,
};
use rustls::{ClientConfig, HandshakeKind};

/// What [`Session::process`] reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// This many plaintext bytes (at least one) were copied to the front of the buffer given.
    Read(usize),
    /// Plaintext is waiting, and the buffer given had no room for it.
    Readable,
    /// Every complete record has been processed: rustls needs more bytes from the peer
    /// (after `outgoing` has been sent). Whether the handshake is still going on:
    /// [`Session::is_handshaking`].
    NeedInput,
    /// The peer sent close_notify, and every byte of plaintext before it has been read.
    PeerClosed,
}

/// Why plaintext could not be encrypted.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Processing the bytes received before the write failed.
    #[error("{0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot encrypt: {0}")]
    Encrypt(#[from] EncryptError),
    /// The handshake has not completed (rustls is waiting for the peer).
    #[error("cannot encrypt before the handshake is complete")]
    Handshaking,
    /// close_notify was sent already.
    #[error("cannot encrypt: the connection is closed")]
    Closed,
}

/// A TLS client session without I/O (see the module doc).
pub struct Session {
    conn: UnbufferedClientConnection,
    /// Received bytes rustls has not discarded yet (a partial record, mostly).
    incoming: Vec<u8>,
    /// Encoded records waiting to be sent.
    outgoing: Vec<u8>,
    /// Plaintext taken out of rustls that the reader has not had yet: `plain[plain_pos..]`.
    plain: Vec<u8>,
    plain_pos: usize,
    /// close_notify has been received (rustls reports it only once).
    peer_closed: bool,
    /// The session failed (its alert is queued): every later call fails with this, without
    /// handing rustls the same bytes again. Boxed: a `rustls::Error` is 64 bytes, and every
    /// connection would carry them inline.
    failed: Option<Box<rustls::Error>>,
}

/// What to do after one state of rustls' `process_tls_records` was handled (no borrow of
/// the connection left).
enum Step {
    Continue,
    Stop(Event),
}

impl Session {
    /// A session with `name` (SNI and the name verified), ready to send its ClientHello.
    pub fn new(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Session, rustls::Error> {
        Ok(Session {
            conn: UnbufferedClientConnection::new(config, name)?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            plain: Vec::new(),
            plain_pos: 0,
            peer_closed: false,
            failed: None,
        })
    }

    /// Bytes from the peer, to be processed by the next [`Session::process`].
    pub fn received(&mut self, bytes: &[u8]) {
        self.incoming.extend_from_slice(bytes);
    }

    /// Process received records until plaintext fills `out`, or rustls needs the network,
    /// or the peer closed. Records rustls answers (handshake flights, alerts, key updates)
    /// are appended to [`Session::outgoing`]. An empty `out` only asks whether plaintext is
    /// waiting ([`Event::Readable`]), without taking it out of rustls. On an error, the alert
    /// rustls sends about it is in `outgoing`.
    pub fn process(&mut self, out: &mut [u8]) -> Result<Event, rustls::Error> {
        if let Some(e) = &self.failed {
            return Err((**e).clone());
        }
        let mut n = 0;
        if self.plain_pos < self.plain.len() {
            if out.is_empty() {
                return Ok(Event::Readable);
            }
            n = copy_prefix(&self.plain[self.plain_pos..], out);
            self.plain_pos += n;
            if self.plain_pos == self.plain.len() {
                self.plain = Vec::new();
                self.plain_pos = 0;
            }
            if n == out.len() {
                return Ok(Event::Read(n));
            }
        }
        loop {
            if self.peer_closed {
                return Ok(if n > 0 {
                    Event::Read(n)
                } else {
                    Event::PeerClosed
                });
            }
            let Session {
                conn,
                incoming,
                outgoing,
                plain,
                peer_closed,
                ..
            } = self;
            let UnbufferedStatus { mut discard, state } = conn.process_tls_records(incoming);
            let step = match state {
                Err(e) => {
                    incoming.drain(..discard);
                    return Err(self.fail(e));
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let room = out.len() - n;
                    let len = traffic.peek_len().map_or(0, NonZeroUsize::get);
                    if len > 0 && (room == 0 || (len > room && n > 0)) {
                        // Left in rustls for the next read.
                        Step::Stop(if n > 0 {
                            Event::Read(n)
                        } else {
                            Event::Readable
                        })
                    } else {
                        match traffic.next_record() {
                            Some(Ok(record)) => {
                                discard += record.discard;
                                let k = copy_prefix(record.payload, &mut out[n..]);
                                n += k;
                                // Only a record larger than the whole buffer leaves a rest.
                                plain.extend_from_slice(&record.payload[k..]);
                                if n > 0 && n == out.len() {
                                    Step::Stop(Event::Read(n))
                                } else {
                                    Step::Continue
                                }
                            }
                            Some(Err(e)) => {
                                incoming.drain(..discard);
                                return Err(self.fail(e));
                            }
                            None => Step::Continue,
                        }
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if let Err(e) = encode_into(outgoing, &mut encode) {
                        incoming.drain(..discard);
                        return Err(self.fail(e));
                    }
                    Step::Continue
                }
                // `outgoing` holds the records from here on, and is sent before the
                // session waits for the peer.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Step::Continue
                }
                Ok(ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_)) => {
                    Step::Stop(if n > 0 {
                        Event::Read(n)
                    } else {
                        Event::NeedInput
                    })
                }
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    *peer_closed = true;
                    Step::Continue
                }
                Ok(other) => {
                    let e = rustls::Error::General(format!("unexpected TLS state {other:?}"));
                    incoming.drain(..discard);
                    return Err(self.fail(e));
                }
            };
            self.incoming.drain(..discard);
            if let Step::Stop(event) = step {
                return Ok(event);
            }
        }
    }

    /// Encrypt all of `plaintext` into [`Session::outgoing`]. Records received meanwhile are
    /// processed first (plaintext among them is kept for the reader).
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<(), WriteError> {
        self.with_write_traffic(|traffic, outgoing| {
            append_records(
                outgoing,
                |buf| traffic.encrypt(plaintext, buf),
                insufficient,
            )
        })
    }

    /// Queue close_notify in [`Session::outgoing`] (nothing when it was sent already).
    pub fn close_notify(&mut self) -> Result<(), WriteError> {
        match self.with_write_traffic(|traffic, outgoing| {
            append_records(
                outgoing,
                |buf| traffic.queue_close_notify(buf),
                insufficient,
            )
        }) {
            Err(WriteError::Closed) => Ok(()),
            other => other,
        }
    }

    /// Run `write` once rustls lets us write application data.
    fn with_write_traffic(
        &mut self,
        write: impl FnOnce(
            &mut WriteTraffic<'_, ClientConnectionData>,
            &mut Vec<u8>,
        ) -> Result<(), EncryptError>,
    ) -> Result<(), WriteError> {
        if let Some(e) = &self.failed {
            return Err((**e).clone().into());
        }
        let mut write = Some(write);
        loop {
            let Session {
                conn,
                incoming,
                outgoing,
                plain,
                plain_pos,
                peer_closed,
                ..
            } = self;
            let UnbufferedStatus { mut discard, state } = conn.process_tls_records(incoming);
            let done = match state {
                Err(e) => {
                    incoming.drain(..discard);
                    return Err(self.fail(e).into());
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    // Kept for the reader: plaintext must be taken out before rustls goes on.
                    if let Some(record) = traffic.next_record() {
                        let record = match record {
                            Ok(record) => record,
                            Err(e) => {
                                incoming.drain(..discard);
                                return Err(self.fail(e).into());
                            }
                        };
                        discard += record.discard;
                        plain.drain(..*plain_pos);
                        *plain_pos = 0;
                        plain.extend_from_slice(record.payload);
                    }
                    false
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if let Err(e) = encode_into(outgoing, &mut encode) {
                        incoming.drain(..discard);
                        return Err(self.fail(e).into());
                    }
                    false
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    false
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let write = write.take().expect("written once, then the loop ends");
                    write(&mut traffic, outgoing)?;
                    true
                }
                Ok(ConnectionState::PeerClosed) => {
                    *peer_closed = true;
                    false
                }
                Ok(ConnectionState::Closed) => {
                    *peer_closed = true;
                    incoming.drain(..discard);
                    return Err(WriteError::Closed);
                }
                Ok(ConnectionState::BlockedHandshake) => {
                    incoming.drain(..discard);
                    return Err(WriteError::Handshaking);
                }
                Ok(other) => {
                    let e = rustls::Error::General(format!("unexpected TLS state {other:?}"));
                    incoming.drain(..discard);
                    return Err(self.fail(e).into());
                }
            };
            self.incoming.drain(..discard);
            if done {
                return Ok(());
            }
        }
    }

    /// Record that the session failed with `e`, and move the alert rustls queued about it
    /// into `outgoing`. rustls is not asked to process anything after this: it would meet
    /// the same bytes again.
    fn fail(&mut self, e: rustls::Error) -> rustls::Error {
        // Queued records come out before rustls looks at received bytes again (plaintext
        // still waiting first, which is dropped).
        while self.conn.wants_write() {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let more = match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.outgoing, &mut encode).is_ok()
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => traffic.next_record().is_some(),
                _ => false,
            };
            self.incoming.drain(..discard);
            if !more {
                break;
            }
        }
        self.incoming = Vec::new();
        self.plain = Vec::new();
        self.plain_pos = 0;
        self.failed = Some(Box::new(e.clone()));
        e
    }

    /// Encoded records waiting to be sent.
    pub fn outgoing(&self) -> &[u8] {
        &self.outgoing
    }

    /// The records to send, leaving none (the buffer goes with them).
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outgoing)
    }

    /// Let go of what a session waiting for its peer does not need: empty buffers are freed,
    /// and received bytes (a partial record) are kept in a buffer of their size.
    pub fn release_idle_buffers(&mut self) {
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        } else {
            self.incoming.shrink_to_fit();
        }
        if self.outgoing.is_empty() {
            self.outgoing = Vec::new();
        }
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.conn.handshake_kind()
    }

    /// The ALPN protocol the server chose, if any.
    #[cfg(test)]
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Bytes held in the session's buffers (capacity), for tests of what a waiting session
    /// keeps.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.plain.capacity()
    }
}

/// Copy as much of `from` as fits to the front of `to`; how much that was.
fn copy_prefix(from: &[u8], to: &mut [u8]) -> usize {
    let k = from.len().min(to.len());
    to[..k].copy_from_slice(&from[..k]);
    k
}

/// Append the handshake (or alert) record rustls has ready to `outgoing`.
fn encode_into(
    outgoing: &mut Vec<u8>,
    encode: &mut EncodeTlsData<'_, ClientConnectionData>,
) -> Result<(), rustls::Error> {
    let required = |e: &EncodeError| match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    };
    append_records(outgoing, |buf| encode.encode(buf), required)
        .map_err(|e| rustls::Error::General(format!("cannot encode a record: {e}")))
}

/// The size an [`EncryptError`] asks for, if that is what it is.
fn insufficient(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

/// Append what `write` encodes to `out`: rustls writes into a slice and says how large it
/// must be when it is too small, so ask with an empty one first and then give exactly that.
fn append_records<E>(
    out: &mut Vec<u8>,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    required: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    let start = out.len();
    let size = match write(&mut []) {
        Ok(_) => return Ok(()),
        Err(e) => required(&e).ok_or(e)?,
    };
    out.resize(start + size, 0);
    match write(&mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    //! A session against an in-memory rustls server: bytes are carried between the two by
    //! hand, whole or in pieces down to one byte, so every partial-record path runs.

    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{RootCertStore, ServerConfig, ServerConnection, SupportedProtocolVersion};
    use std::io::{Read, Write};

    const NAME: &str = "localhost";
    /// How many bytes at a time the server's records reach the client, in the tests that
    /// try several: one byte, a few, about one record, everything at once.
    const PIECES: [usize; 4] = [1, 7, 16 * 1024 + 5, usize::MAX];

    struct Pki {
        roots: RootCertStore,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![NAME.to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        Pki {
            roots,
            chain: vec![leaf.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    struct Pair {
        client: Session,
        server: ServerConnection,
    }

    fn pair_with(
        pki: &Pki,
        roots: RootCertStore,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Pair {
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), pki.key.clone_key())
            .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(NAME).unwrap();
        Pair {
            client: Session::new(client_config(roots), name).unwrap(),
            server: ServerConnection::new(Arc::new(server)).unwrap(),
        }
    }

    fn pair(versions: &[&'static SupportedProtocolVersion]) -> Pair {
        let pki = pki();
        let roots = pki.roots.clone();
        pair_with(&pki, roots, versions)
    }

    impl Pair {
        /// Client -> server: everything the client has encoded.
        fn carry_to_server(&mut self) -> Result<(), rustls::Error> {
            let out = self.client.take_outgoing();
            let mut rest = &out[..];
            while !rest.is_empty() {
                self.server.read_tls(&mut rest).unwrap();
                self.server.process_new_packets()?;
            }
            Ok(())
        }

        /// Server -> client, without processing: everything the server has to send.
        fn server_records(&mut self) -> Vec<u8> {
            let mut wire = Vec::new();
            while self.server.wants_write() {
                self.server.write_tls(&mut wire).unwrap();
            }
            wire
        }

        /// Server -> client in pieces of `piece` bytes, the client processing each piece
        /// into buffers of `buf_len` bytes; returns the plaintext and the last event.
        fn carry_to_client(&mut self, piece: usize, buf_len: usize) -> (Vec<u8>, Event) {
            let wire = self.server_records();
            let mut plain = Vec::new();
            let mut last = self.drain(buf_len, &mut plain);
            for bytes in wire.chunks(piece.min(wire.len()).max(1)) {
                self.client.received(bytes);
                last = self.drain(buf_len, &mut plain);
            }
            (plain, last)
        }

        /// Client: read plaintext into `buf_len`-byte buffers until it needs input or
        /// the peer closed.
        fn drain(&mut self, buf_len: usize, plain: &mut Vec<u8>) -> Event {
            let mut buf = vec![0; buf_len];
            loop {
                match self.client.process(&mut buf).unwrap() {
                    Event::Read(n) => {
                        assert!(n > 0 && n <= buf_len);
                        plain.extend_from_slice(&buf[..n]);
                    }
                    other => return other,
                }
            }
        }

        fn handshake(&mut self, piece: usize) {
            let mut flights = 0;
            while self.client.is_handshaking() {
                assert_eq!(self.client.process(&mut []).unwrap(), Event::NeedInput);
                self.carry_to_server().unwrap();
                let (plain, event) = self.carry_to_client(piece, 1);
                assert!(plain.is_empty());
                assert_eq!(event, Event::NeedInput);
                flights += 1;
                assert!(flights < 5, "handshake does not finish");
            }
            self.carry_to_server().unwrap();
            assert!(!self.server.is_handshaking());
        }

        /// The client sends `request`; the server reads it and answers `response` and
        /// close_notify.
        fn exchange(&mut self, request: &[u8], response: &[u8]) {
            self.client.encrypt(request).unwrap();
            self.carry_to_server().unwrap();
            let mut got = vec![0; request.len()];
            self.server.reader().read_exact(&mut got).unwrap();
            assert_eq!(got, request);
            self.server.writer().write_all(response).unwrap();
            self.server.send_close_notify();
        }
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn whole_exchange_in_any_pieces_into_any_buffer() {
        let response = body(40_000);
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            for piece in PIECES {
                for buf_len in [1, 1000, 4096, 20_000] {
                    let mut p = pair(&[version]);
                    p.handshake(piece);
                    assert_eq!(p.client.alpn(), Some(&b"http/1.1"[..]));
                    p.exchange(b"GET / HTTP/1.1\r\n\r\n", &response);
                    let (plain, event) = p.carry_to_client(piece, buf_len);
                    let what = format!("{version:?}, pieces of {piece}, buffer {buf_len}");
                    assert_eq!(event, Event::PeerClosed, "{what}");
                    assert!(plain == response, "{what}: {} bytes differ", plain.len());
                    // Ended: everything consumed, and it says so again.
                    assert_eq!(p.client.process(&mut [0; 10]).unwrap(), Event::PeerClosed);
                    assert!(p.client.incoming.is_empty() && p.client.plain.is_empty());
                    p.client.close_notify().unwrap();
                    p.carry_to_server().unwrap();
                }
            }
        }
    }

    #[test]
    fn a_waiting_session_holds_at_most_a_partial_record() {
        let mut p = pair(&[&rustls::version::TLS13]);
        p.handshake(usize::MAX);
        p.client.encrypt(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        p.carry_to_server().unwrap();
        // The session tickets (records without plaintext) come and go.
        let (plain, event) = p.carry_to_client(usize::MAX, 0);
        assert!(plain.is_empty());
        assert_eq!(event, Event::NeedInput);
        p.client.release_idle_buffers();
        assert_eq!(p.client.held(), 0);
        // Half a record: kept, in a buffer of its size.
        p.server.writer().write_all(&body(3000)).unwrap();
        let wire = p.server_records();
        let half = wire.len() / 2;
        p.client.received(&wire[..half]);
        assert_eq!(p.client.process(&mut [0; 100]).unwrap(), Event::NeedInput);
        p.client.release_idle_buffers();
        assert_eq!(p.client.held(), half);
        p.client.received(&wire[half..]);
        let mut plain = Vec::new();
        assert_eq!(p.drain(4096, &mut plain), Event::NeedInput);
        assert_eq!(plain, body(3000));
        p.client.release_idle_buffers();
        assert_eq!(p.client.held(), 0);
    }

    #[test]
    fn plaintext_waits_in_rustls_until_a_buffer_comes() {
        let mut p = pair(&[&rustls::version::TLS13]);
        p.handshake(usize::MAX);
        p.server.writer().write_all(b"hello").unwrap();
        let wire = p.server_records();
        p.client.received(&wire);
        assert_eq!(p.client.process(&mut []).unwrap(), Event::Readable);
        assert_eq!(p.client.process(&mut []).unwrap(), Event::Readable);
        assert_eq!(p.client.plain.capacity(), 0, "not copied out of rustls");
        let mut buf = [0; 64];
        assert_eq!(p.client.process(&mut buf).unwrap(), Event::Read(5));
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(p.client.process(&mut buf).unwrap(), Event::NeedInput);
    }

    #[test]
    fn a_record_larger_than_the_buffer_is_read_in_parts() {
        let mut p = pair(&[&rustls::version::TLS13]);
        p.handshake(usize::MAX);
        // One record of 10,000 bytes, then one of 10.
        p.server.writer().write_all(&body(10_000)).unwrap();
        p.server.writer().write_all(&body(10)).unwrap();
        let wire = p.server_records();
        p.client.received(&wire);
        let mut buf = vec![0; 4096];
        assert_eq!(p.client.process(&mut buf).unwrap(), Event::Read(4096));
        assert_eq!(p.client.process(&mut []).unwrap(), Event::Readable);
        assert_eq!(p.client.process(&mut buf).unwrap(), Event::Read(4096));
        // The rest of the large record, and the small one behind it.
        let rest = 10_000 - 8192;
        assert_eq!(p.client.process(&mut buf).unwrap(), Event::Read(rest + 10));
        assert_eq!(&buf[..rest], &body(10_000)[8192..]);
        assert_eq!(&buf[rest..rest + 10], &body(10)[..]);
        assert_eq!(p.client.process(&mut buf).unwrap(), Event::NeedInput);
        assert_eq!(p.client.plain.capacity(), 0);
    }

    #[test]
    fn plaintext_received_before_a_write_is_kept_for_the_reader() {
        let mut p = pair(&[&rustls::version::TLS13]);
        p.handshake(usize::MAX);
        p.server.writer().write_all(b"early").unwrap();
        let wire = p.server_records();
        p.client.received(&wire);
        p.client.encrypt(b"request").unwrap();
        p.carry_to_server().unwrap();
        let mut got = [0; 7];
        p.server.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"request");
        let mut buf = [0; 64];
        assert_eq!(p.client.process(&mut buf).unwrap(), Event::Read(5));
        assert_eq!(&buf[..5], b"early");
    }

    #[test]
    fn encrypting_before_the_handshake_is_refused() {
        let mut p = pair(&[&rustls::version::TLS13]);
        assert!(matches!(
            p.client.encrypt(b"x"),
            Err(WriteError::Handshaking)
        ));
    }

    #[test]
    fn a_rejected_certificate_is_an_error_with_an_alert_to_send() {
        let pki = pki();
        let mut p = pair_with(&pki, RootCertStore::empty(), &[&rustls::version::TLS13]);
        assert_eq!(p.client.process(&mut []).unwrap(), Event::NeedInput);
        p.carry_to_server().unwrap();
        let wire = p.server_records();
        p.client.received(&wire);
        let err = p.client.process(&mut []).unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ),
            "{err:?}"
        );
        assert!(!p.client.outgoing().is_empty());
        let seen = p.carry_to_server().unwrap_err();
        assert!(matches!(seen, rustls::Error::AlertReceived(_)), "{seen:?}");
    }

    #[test]
    fn after_an_error_every_call_fails_the_same_way() {
        let mut p = pair(&[&rustls::version::TLS13]);
        assert_eq!(p.client.process(&mut []).unwrap(), Event::NeedInput);
        let hello = p.client.take_outgoing();
        p.client.received(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        let err = p.client.process(&mut []).unwrap_err();
        let alert = p.client.take_outgoing();
        assert!(!alert.is_empty() && alert != hello);
        assert_eq!(p.client.process(&mut [0; 10]).unwrap_err(), err);
        assert!(matches!(p.client.encrypt(b"x"), Err(WriteError::Tls(e)) if e == err));
        assert!(p.client.close_notify().is_err());
        assert!(p.client.outgoing().is_empty(), "one alert only");
        assert_eq!(p.client.held(), 0);
    }

    #[test]
    fn close_notify_reaches_the_server_once() {
        let mut p = pair(&[&rustls::version::TLS13]);
        p.handshake(usize::MAX);
        p.client.close_notify().unwrap();
        p.client.close_notify().unwrap();
        p.carry_to_server().unwrap();
        let mut buf = [0; 8];
        assert_eq!(p.server.reader().read(&mut buf).unwrap(), 0, "clean EOF");
    }

    #[test]
    fn large_writes_are_split_into_records() {
        let mut p = pair(&[&rustls::version::TLS13]);
        p.handshake(usize::MAX);
        let data = body(100_000);
        p.client.encrypt(&data).unwrap();
        let wire = p.client.take_outgoing();
        let mut rest = &wire[..];
        let mut got = Vec::new();
        while !rest.is_empty() {
            p.server.read_tls(&mut rest).unwrap();
            p.server.process_new_packets().unwrap();
            let _ = p.server.reader().read_to_end(&mut got);
        }
        assert!(got == data);
    }
}
