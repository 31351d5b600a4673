//! The DNS wire format, sans IO: queries built and answers read with hickory-proto (nothing
//! parsed by hand), a datagram matched to the query it claims to answer, and what an answer
//! says about one question: addresses along the CNAME chain from the question's name,
//! NXDOMAIN, no data, truncated (ask again over TCP), or a server error.
//!
//! Matching (with the socket and the server's address checked by the caller): the id, then
//! QR set, opcode QUERY and the same question (name case-insensitively, type, class IN).
//! Records off the CNAME chain, or of another type or class, are never used.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

/// Bytes of a DNS header.
pub const HEADER_LEN: usize = 12;
/// The UDP payload announced with EDNS0 (the DNS flag day 2020 value: fits any path MTU).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Largest UDP answer read (servers may send more than they were told; more is cut and
/// then fails to decode).
pub const MAX_UDP_ANSWER: usize = 4096;
/// CNAME records followed at most from the question's name.
pub const MAX_CNAME_CHAIN: usize = 8;

/// One question: a fully qualified name and A or AAAA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub qtype: RecordType,
}

impl Question {
    /// `name` in text form (no final dot needed).
    pub fn new(name: &str, qtype: RecordType) -> Result<Question, WireError> {
        let mut name = Name::from_ascii(name).map_err(|_| WireError::BadName)?;
        name.set_fqdn(true);
        Ok(Question { name, qtype })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a valid DNS name")]
    BadName,
    #[error("cannot encode the query: {0}")]
    Encode(String),
}

/// A recursive query for `q` with transaction id `id` (EDNS0 with [`EDNS_PAYLOAD`] if
/// `edns`).
pub fn encode_query(id: u16, q: &Question, edns: bool) -> Result<Vec<u8>, WireError> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(q.name.clone(), q.qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        msg.set_edns(e);
    }
    msg.to_vec().map_err(|e| WireError::Encode(e.to_string()))
}

/// The transaction id of a datagram, if it is long enough to be a DNS message.
pub fn message_id(bytes: &[u8]) -> Option<u16> {
    (bytes.len() >= HEADER_LEN).then(|| u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// A datagram carrying the id of a query for some question, read against that question.
#[derive(Debug)]
pub enum Reply {
    /// The answer to the question.
    Answer(Message),
    /// Not a DNS message: the try failed (the server sent garbage, or someone sent it in
    /// the server's name with the right port and id, which a forged SERVFAIL does as well).
    Malformed(String),
    /// A message, but not an answer to this question: ignored, the query keeps waiting.
    Mismatch,
}

/// Read `bytes` (whose id is that of the query for `q`).
pub fn read_reply(bytes: &[u8], q: &Question) -> Reply {
    let msg = match Message::from_vec(bytes) {
        Ok(msg) => msg,
        Err(e) => return Reply::Malformed(format!("malformed answer: {e}")),
    };
    let meta = &msg.metadata;
    if meta.message_type != MessageType::Response || meta.op_code != OpCode::Query {
        return Reply::Mismatch;
    }
    let same_question = match msg.queries.as_slice() {
        [asked] => {
            asked.name() == &q.name
                && asked.query_type() == q.qtype
                && asked.query_class() == DNSClass::IN
        }
        // Some servers leave the question out of an error answer; it can only fail a try.
        [] => !matches!(
            meta.response_code,
            ResponseCode::NoError | ResponseCode::NXDomain
        ),
        _ => false,
    };
    if same_question {
        Reply::Answer(msg)
    } else {
        Reply::Mismatch
    }
}

/// What an answer says about its question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Addresses of the question's type at the end of the CNAME chain, answer order, and the
    /// smallest TTL along the chain (seconds).
    Addresses(Vec<IpAddr>, u32),
    NxDomain,
    /// The name exists but has no record of this type (NODATA), or its CNAME chain ends
    /// without one.
    NoData,
    /// The TC bit: the answer did not fit, ask over TCP.
    Truncated,
    /// Any other response code (SERVFAIL, REFUSED, FORMERR, NOTIMP, ...).
    ServerError(ResponseCode),
}

/// Read the answer to `q` in `msg` (which [`read_reply`] matched to it).
pub fn interpret(msg: &Message, q: &Question) -> Answer {
    if msg.metadata.truncation {
        return Answer::Truncated;
    }
    match msg.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Answer::NxDomain,
        other => return Answer::ServerError(other),
    }
    let mut owner = &q.name;
    let mut ttl = u32::MAX;
    for _ in 0..=MAX_CNAME_CHAIN {
        let mut ips: Vec<IpAddr> = Vec::new();
        let mut ips_ttl = ttl;
        let mut alias = None;
        for record in &msg.answers {
            if record.dns_class != DNSClass::IN || record.name != *owner {
                continue;
            }
            let ip = match (&record.data, q.qtype) {
                (RData::A(a), RecordType::A) => IpAddr::V4(a.0),
                (RData::AAAA(aaaa), RecordType::AAAA) => IpAddr::V6(aaaa.0),
                (RData::CNAME(target), _) => {
                    alias.get_or_insert((&target.0, record.ttl));
                    continue;
                }
                _ => continue,
            };
            ips_ttl = ips_ttl.min(record.ttl);
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        if !ips.is_empty() {
            return Answer::Addresses(ips, ips_ttl);
        }
        match alias {
            Some((target, alias_ttl)) => {
                owner = target;
                ttl = ttl.min(alias_ttl);
            }
            None => return Answer::NoData,
        }
    }
    Answer::NoData
}

/// The response code's name as in the RFCs (for one-line error messages).
pub fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::FormErr => "FORMERR".to_string(),
        ResponseCode::ServFail => "SERVFAIL".to_string(),
        ResponseCode::NXDomain => "NXDOMAIN".to_string(),
        ResponseCode::NotImp => "NOTIMP".to_string(),
        ResponseCode::Refused => "REFUSED".to_string(),
        other => format!("RCODE {}", u16::from(other)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};
    use hickory_proto::rr::Record;
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub(crate) fn name(s: &str) -> Name {
        let mut n = Name::from_ascii(s).unwrap();
        n.set_fqdn(true);
        n
    }

    /// A response to `query_bytes` with `rcode` and `answers`.
    pub(crate) fn respond(
        query_bytes: &[u8],
        rcode: ResponseCode,
        answers: Vec<Record>,
    ) -> Vec<u8> {
        let query = Message::from_vec(query_bytes).unwrap();
        let mut msg = Message::response(query.metadata.id, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.metadata.recursion_available = true;
        msg.metadata.response_code = rcode;
        msg.add_queries(query.queries.clone());
        msg.add_answers(answers);
        msg.to_vec().unwrap()
    }

    pub(crate) fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(ip))))
    }

    fn aaaa(owner: &str, ttl: u32, ip: Ipv6Addr) -> Record {
        Record::from_rdata(name(owner), ttl, RData::AAAA(AAAA(ip)))
    }

    fn cname(owner: &str, ttl: u32, target: &str) -> Record {
        Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
    }

    fn q(s: &str, t: RecordType) -> Question {
        Question::new(s, t).unwrap()
    }

    fn answer_of(question: &Question, rcode: ResponseCode, answers: Vec<Record>) -> Answer {
        let query = encode_query(0x1234, question, false).unwrap();
        let reply = respond(&query, rcode, answers);
        match read_reply(&reply, question) {
            Reply::Answer(msg) => interpret(&msg, question),
            other => panic!("not an answer: {other:?}"),
        }
    }

    #[test]
    fn query_round_trips_through_hickory() {
        let question = q("WWW.Example.test", RecordType::AAAA);
        for edns in [false, true] {
            let bytes = encode_query(0xbeef, &question, edns).unwrap();
            assert_eq!(message_id(&bytes), Some(0xbeef));
            let msg = Message::from_vec(&bytes).unwrap();
            assert!(msg.metadata.recursion_desired);
            assert_eq!(msg.metadata.message_type, MessageType::Query);
            assert_eq!(msg.queries.len(), 1);
            assert_eq!(msg.queries[0].name(), &name("www.example.test"));
            assert_eq!(msg.queries[0].query_type(), RecordType::AAAA);
            assert_eq!(
                msg.edns.map(|e| e.max_payload()),
                edns.then_some(EDNS_PAYLOAD)
            );
        }
        assert_eq!(message_id(&[0; HEADER_LEN - 1]), None);
    }

    #[test]
    fn bad_names_are_refused_before_any_query() {
        assert_eq!(
            Question::new(&"x".repeat(64), RecordType::A),
            Err(WireError::BadName)
        );
        assert_eq!(
            Question::new("a..b", RecordType::A),
            Err(WireError::BadName)
        );
    }

    #[test]
    fn addresses_follow_the_cname_chain_and_nothing_else() {
        let question = q("www.example.test", RecordType::A);
        let got = answer_of(
            &question,
            ResponseCode::NoError,
            vec![
                // Off the chain: never used, whatever it says.
                a("evil.test", 5, [6, 6, 6, 6]),
                cname("WWW.example.test", 300, "edge.cdn.test"),
                cname("edge.cdn.test", 120, "node.cdn.test"),
                a("node.cdn.test", 600, [192, 0, 2, 1]),
                aaaa("node.cdn.test", 1, Ipv6Addr::LOCALHOST),
                a("node.cdn.test", 600, [192, 0, 2, 2]),
                a("node.cdn.test", 600, [192, 0, 2, 1]),
            ],
        );
        let want = vec![IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2])];
        // The smallest TTL on the chain (the second CNAME).
        assert_eq!(got, Answer::Addresses(want, 120));
    }

    #[test]
    fn a_chain_without_addresses_or_a_loop_is_no_data() {
        let question = q("a.test", RecordType::A);
        let dangling = vec![cname("a.test", 60, "b.test")];
        assert_eq!(
            answer_of(&question, ResponseCode::NoError, dangling),
            Answer::NoData
        );
        let looping = vec![cname("a.test", 60, "b.test"), cname("b.test", 60, "a.test")];
        assert_eq!(
            answer_of(&question, ResponseCode::NoError, looping),
            Answer::NoData
        );
        let wrong_type = vec![aaaa("a.test", 60, Ipv6Addr::LOCALHOST)];
        assert_eq!(
            answer_of(&question, ResponseCode::NoError, wrong_type),
            Answer::NoData
        );
    }

    #[test]
    fn response_codes() {
        let question = q("a.test", RecordType::A);
        assert_eq!(
            answer_of(&question, ResponseCode::NXDomain, vec![]),
            Answer::NxDomain
        );
        for code in [
            ResponseCode::ServFail,
            ResponseCode::Refused,
            ResponseCode::FormErr,
        ] {
            assert_eq!(
                answer_of(&question, code, vec![]),
                Answer::ServerError(code)
            );
        }
        assert_eq!(rcode_name(ResponseCode::ServFail), "SERVFAIL");
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
    }

    #[test]
    fn truncated_answers_ask_for_tcp() {
        let question = q("big.test", RecordType::A);
        let query = encode_query(7, &question, false).unwrap();
        let mut reply = respond(
            &query,
            ResponseCode::NoError,
            vec![a("big.test", 60, [1, 2, 3, 4])],
        );
        reply[2] |= 0x02; // TC
        let Reply::Answer(msg) = read_reply(&reply, &question) else {
            panic!("not an answer")
        };
        assert_eq!(interpret(&msg, &question), Answer::Truncated);
    }

    #[test]
    fn answers_to_another_question_are_mismatches() {
        let asked = q("a.test", RecordType::A);
        let query = encode_query(9, &asked, false).unwrap();
        let reply = respond(
            &query,
            ResponseCode::NoError,
            vec![a("a.test", 60, [1, 2, 3, 4])],
        );
        for other in [
            q("b.test", RecordType::A),
            q("a.test", RecordType::AAAA),
            q("a.test.evil", RecordType::A),
        ] {
            assert!(matches!(read_reply(&reply, &other), Reply::Mismatch));
        }
        // Case differs: the same name.
        assert!(matches!(
            read_reply(&reply, &q("A.TEST", RecordType::A)),
            Reply::Answer(_)
        ));
        // A query (QR clear) is not an answer, even with the right question.
        assert!(matches!(read_reply(&query, &asked), Reply::Mismatch));
        // A NOERROR without the question is not an answer either.
        let mut bare = Message::response(9, OpCode::Query);
        bare.add_answer(a("a.test", 60, [1, 2, 3, 4]));
        assert!(matches!(
            read_reply(&bare.to_vec().unwrap(), &asked),
            Reply::Mismatch
        ));
        // ... but a SERVFAIL without it fails the try.
        let failed = Message::error_msg(9, OpCode::Query, ResponseCode::ServFail);
        assert!(matches!(
            read_reply(&failed.to_vec().unwrap(), &asked),
            Reply::Answer(_)
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        let asked = q("a.test", RecordType::A);
        let mut junk = vec![0u8; 40];
        junk[2] = 0x80;
        junk[5] = 50; // fifty questions that are not there
        assert!(matches!(read_reply(&junk, &asked), Reply::Malformed(_)));
        let query = encode_query(9, &asked, false).unwrap();
        let reply = respond(
            &query,
            ResponseCode::NoError,
            vec![a("a.test", 60, [1, 2, 3, 4])],
        );
        assert!(matches!(
            read_reply(&reply[..reply.len() - 3], &asked),
            Reply::Malformed(_)
        ));
    }
}
