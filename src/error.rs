//! The journal's `error.kind` vocabulary: [`ErrorKind`], the closed set of kinds the record
//! contract allows (ARCHITECTURE.md, "Journal record").
//!
//! A leaf module: each layer owns its error type (`http::HttpError`, `html::HtmlError`,
//! `dns::DnsError`, `net::NetError`, `fetch::FetchError`) and maps it to a kind here, so
//! nothing in this file depends on them.

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
    /// The network policy (`--deny`/`--allow`) forbids every address of the URL's host.
    Denied,
    /// robots.txt disallows the URL for ringcrawl's user agent.
    Robots,
    /// The HTTP proxy failed: unreachable, a `CONNECT` refused, 407, a malformed answer.
    Proxy,
    /// A bug in ringcrawl (a panic while fetching this URL), reported instead of hanging.
    Internal,
}

impl ErrorKind {
    /// Every kind, in a stable order (summaries, tests).
    pub const ALL: [ErrorKind; 19] = [
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
        ErrorKind::Denied,
        ErrorKind::Robots,
        ErrorKind::Proxy,
        ErrorKind::Internal,
    ];

    /// This kind's position in [`ErrorKind::ALL`] (for per-kind counter arrays).
    pub fn index(self) -> usize {
        self as usize
    }

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
            ErrorKind::Denied => "denied",
            ErrorKind::Robots => "robots",
            ErrorKind::Proxy => "proxy",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_sits_at_its_index_and_has_a_distinct_name() {
        let mut names = std::collections::BTreeSet::new();
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k}");
            assert!(names.insert(k.as_str()), "{k} twice");
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{k}\""));
        }
    }
}
