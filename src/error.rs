//! Typed errors per stage and their mapping to the journal's `error.kind`.
//!
//! Each layer owns its error type (`http::HttpError`, `html::HtmlError`, `dns::DnsError`,
//! `net::NetError`); [`FetchError`] gathers them for one URL and [`ErrorKind`] is the closed
//! set of kinds the journal contract allows. Messages are one line, for people.

use serde::Serialize;

/// The journal's `error.kind` vocabulary (see ARCHITECTURE.md, "Journal record").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidUrl,
    DnsNxdomain,
    DnsNoAddress,
    DnsFailure,
    DnsTimeout,
    ConnectRefused,
    ConnectTimeout,
    Unreachable,
    Tls,
    Reset,
    Timeout,
    Protocol,
    TooLarge,
    TooManyRedirects,
    NoLink,
    /// A bug in ringcrawl (a panic while fetching this URL), reported instead of hanging.
    Internal,
}

impl ErrorKind {
    /// Every kind, in a stable order (summaries, tests).
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::InvalidUrl,
        ErrorKind::DnsNxdomain,
        ErrorKind::DnsNoAddress,
        ErrorKind::DnsFailure,
        ErrorKind::DnsTimeout,
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectTimeout,
        ErrorKind::Unreachable,
        ErrorKind::Tls,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::Protocol,
        ErrorKind::TooLarge,
        ErrorKind::TooManyRedirects,
        ErrorKind::NoLink,
        ErrorKind::Internal,
    ];

    /// The snake_case name written to the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidUrl => "invalid_url",
            ErrorKind::DnsNxdomain => "dns_nxdomain",
            ErrorKind::DnsNoAddress => "dns_no_address",
            ErrorKind::DnsFailure => "dns_failure",
            ErrorKind::DnsTimeout => "dns_timeout",
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Tls => "tls",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::TooManyRedirects => "too_many_redirects",
            ErrorKind::NoLink => "no_link",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one URL failed. Every variant maps to exactly one [`ErrorKind`].
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error("timed out after {0} ms (whole-URL deadline)")]
    Deadline(u64),
    #[error("more than {0} redirects")]
    TooManyRedirects(u32),
    #[error("redirect loop back to {0}")]
    RedirectLoop(String),
    #[error("no element matches the --follow selector with a usable href")]
    NoLink,
}

impl FetchError {
    /// The journal `error.kind` for this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FetchError::InvalidUrl(_) => ErrorKind::InvalidUrl,
            FetchError::Dns(e) => e.kind(),
            FetchError::Net(e) => e.kind(),
            FetchError::Http(e) => e.kind(),
            FetchError::Deadline(_) => ErrorKind::Timeout,
            FetchError::TooManyRedirects(_) | FetchError::RedirectLoop(_) => {
                ErrorKind::TooManyRedirects
            }
            FetchError::NoLink => ErrorKind::NoLink,
        }
    }
}
