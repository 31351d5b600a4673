//! The stub resolver's TCP transport, for answers that came truncated over UDP: one query
//! on a fresh connection to the same server (RFC 7766 framing: a two-byte length before each
//! message), with a new random id, matched as over UDP.

use std::net::SocketAddr;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{self, Question, Reply};

/// Ask `server` for `q` over TCP. No time limit here: the caller's tries bound it.
pub async fn exchange(server: SocketAddr, q: &Question, edns: bool) -> Result<Message, String> {
    let id: u16 = rand::random();
    let query = wire::encode_query(id, q, edns).map_err(|e| e.to_string())?;
    let err = |what: &str, e: std::io::Error| format!("{what} {server} over TCP: {e}");
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| err("cannot connect to", e))?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long for TCP".to_string())?;
    let mut framed = Vec::with_capacity(2 + query.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&query);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| err("cannot send to", e))?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| err("no answer from", e))?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|e| err("short answer from", e))?;
    if wire::message_id(&answer) != Some(id) {
        return Err(format!("{server} answered another query over TCP"));
    }
    match wire::read_reply(&answer, q) {
        Reply::Answer(msg) => Ok(msg),
        Reply::Malformed(why) => Err(format!("{server} sent a {why} over TCP")),
        Reply::Mismatch => Err(format!("{server} answered another question over TCP")),
    }
}
