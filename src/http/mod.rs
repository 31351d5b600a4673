//! Sans-IO HTTP/1.1 client protocol: request serialization (and the validation of user-given
//! headers), response head parsing and body framing/decoding. No sockets here: callers feed
//! bytes in and get values out.

pub mod body;
pub mod decode;
pub mod exchange;
pub mod request;
pub mod response;

pub use body::{BodyEvent, ResponseReader};
pub use exchange::{Consumer, Exchange, ExchangeError, ExchangeOptions, Next, Want};
pub use request::{
    write_connect, write_request, Header, HeaderBlock, HeaderError, Method, Request, Target,
};
pub use response::{ResponseHead, MAX_HEADERS, MAX_HEAD_BYTES};

use crate::error::ErrorKind;

/// Errors from the HTTP layer. `kind()` is `protocol` or `too_large`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The peer violated HTTP/1.1; the message says how (one line).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A configured or built-in size limit was exceeded.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The peer closed the connection before the response head was complete (a protocol
    /// error, and a transient one: worth a retry).
    #[error("protocol error: {0}")]
    ClosedBeforeHead(&'static str),
}

impl HttpError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            HttpError::Protocol(_) | HttpError::ClosedBeforeHead(_) => ErrorKind::Protocol,
            HttpError::TooLarge(_) => ErrorKind::TooLarge,
        }
    }
}
