//! DNS messages in and out: what a client's bytes are allowed to make us parse, and the bytes
//! that go back, sized for the transport they leave on.

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// The largest UDP message the server takes or sends, whatever a client's EDNS offers.
pub(crate) const MAX_UDP: usize = 4096;

/// The size every UDP client can take, and the limit without EDNS (RFC 1035).
const CLASSIC_UDP: usize = 512;

/// The largest message the two-byte length of DNS over TCP can frame.
pub(crate) const MAX_TCP: usize = u16::MAX as usize;

/// The fewest bytes a question takes: the root name, type and class.
const MIN_QUESTION: usize = 1 + 2 + 2;

/// The fewest bytes a record takes: the root name, type, class, TTL and data length.
const MIN_RECORD: usize = 1 + 2 + 2 + 4 + 2;

/// How a query reached the server, which bounds the size of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// What a client's bytes turned out to be.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A query with one question, the only kind the server answers or forwards.
    Query(Message),
    /// Not a query the server takes; the header is enough to say so.
    Rejected(Vec<u8>),
    /// Nothing worth an answer: not even a DNS header, or a response.
    Ignored,
}

/// Reads a client's message, refusing anything but a standard query with one question before
/// hickory allocates for the counts in its header.
pub(crate) fn parse(bytes: &[u8], recursion_available: bool) -> Parsed {
    let Ok(header) = Header::read(&mut BinDecoder::new(bytes)) else {
        return Parsed::Ignored;
    };
    if header.message_type() == MessageType::Response {
        return Parsed::Ignored;
    }
    let reject = |code| match header_reply(&header, code, recursion_available) {
        Some(reply) => Parsed::Rejected(reply),
        None => Parsed::Ignored,
    };
    if header.op_code() != OpCode::Query {
        return reject(ResponseCode::NotImp);
    }
    if header.query_count() != 1 || !counts_fit(&header, bytes.len()) {
        return reject(ResponseCode::FormErr);
    }
    match Message::from_vec(bytes) {
        Ok(message) => Parsed::Query(message),
        Err(_) => reject(ResponseCode::FormErr),
    }
}

/// Whether a message of `len` bytes could hold the sections its header counts. The decoder
/// reserves room for each count before reading, so a 12-byte packet claiming 65535 records
/// would otherwise cost megabytes.
pub(crate) fn counts_fit(header: &Header, len: usize) -> bool {
    let records = usize::from(header.answer_count())
        + usize::from(header.name_server_count())
        + usize::from(header.additional_count());
    let least =
        Header::len() + usize::from(header.query_count()) * MIN_QUESTION + records * MIN_RECORD;
    least <= len
}

/// The most bytes the answer to `query` may take on `transport`: 512 over UDP, or the
/// client's EDNS payload size up to [`MAX_UDP`]; all a frame holds over TCP.
pub(crate) fn limit(query: &Message, transport: Transport) -> usize {
    match (transport, query.extensions()) {
        (Transport::Tcp, _) => MAX_TCP,
        (Transport::Udp, None) => CLASSIC_UDP,
        (Transport::Udp, Some(edns)) => usize::from(edns.max_payload()).clamp(CLASSIC_UDP, MAX_UDP),
    }
}

/// A response to `query` holding its question and no records yet: the client's ID and RD and
/// CD flags, and an OPT record when the query had one.
pub(crate) fn response_to(query: &Message, recursion_available: bool) -> Message {
    let mut header = Header::response_from_request(query.header());
    header.set_recursion_available(recursion_available);
    let mut response = Message::new();
    response.set_header(header);
    response.add_queries(query.queries().iter().cloned());
    if query.extensions().is_some() {
        let mut edns = Edns::new();
        // What the server reads over UDP.
        edns.set_max_payload(MAX_UDP as u16);
        response.set_edns(edns);
    }
    response
}

/// An error response to `query` carrying its question.
pub(crate) fn error_reply(
    query: &Message,
    code: ResponseCode,
    recursion_available: bool,
    limit: usize,
) -> Option<Vec<u8>> {
    let mut response = response_to(query, recursion_available);
    response.set_response_code(code);
    encode(&response, limit)
}

/// An error response built from a query's header alone, for queries that go no further.
fn header_reply(header: &Header, code: ResponseCode, recursion_available: bool) -> Option<Vec<u8>> {
    let mut reply = Header::response_from_request(header);
    reply
        .set_response_code(code)
        .set_recursion_available(recursion_available);
    let mut response = Message::new();
    response.set_header(reply);
    response.to_vec().ok()
}

/// `response` as at most `limit` bytes: whole when it fits, else its question alone with TC set
/// so the client asks again over TCP.
pub(crate) fn encode(response: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    truncated(response, limit)
}

/// The question of `response` with TC set, if that fits in `limit` bytes.
fn truncated(response: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = response.truncate().to_vec().ok()?;
    (bytes.len() <= limit).then_some(bytes)
}

/// An upstream server's answer: the bytes it sent and what they say.
#[derive(Debug)]
pub(crate) struct Answer {
    pub bytes: Vec<u8>,
    pub message: Message,
}

/// An upstream's answer as the client receives it: the upstream's bytes under the client's ID,
/// or only its question with TC set when it is larger than the client takes.
pub(crate) fn relay(answer: Answer, client_id: u16, limit: usize) -> Option<Vec<u8>> {
    let Answer {
        mut bytes,
        mut message,
    } = answer;
    if bytes.len() <= limit && bytes.len() >= Header::len() {
        bytes[..2].copy_from_slice(&client_id.to_be_bytes());
        return Some(bytes);
    }
    message.set_id(client_id);
    truncated(&message, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::net::Ipv4Addr;

    fn query(name: &str) -> Message {
        let mut message = Message::new();
        message
            .set_id(0x4242)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        message
    }

    fn header(bytes: &[u8]) -> Header {
        Header::read(&mut BinDecoder::new(bytes)).unwrap()
    }

    #[test]
    fn a_header_claiming_more_records_than_its_bytes_hold_does_not_fit() {
        // ID, flags, one question, and 65535 additional records in 12 bytes.
        let bytes = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff];
        assert!(!counts_fit(&header(&bytes), bytes.len()));
        assert!(matches!(parse(&bytes, true), Parsed::Rejected(_)));
    }

    #[test]
    fn a_real_query_fits_its_counts() {
        let bytes = query("web.").to_vec().unwrap();
        assert!(counts_fit(&header(&bytes), bytes.len()));
        assert!(!counts_fit(
            &header(&bytes),
            Header::len() + MIN_QUESTION - 1
        ));
    }

    #[test]
    fn responses_and_short_packets_are_ignored() {
        let mut response = query("web.");
        response.set_message_type(MessageType::Response);
        assert!(matches!(
            parse(&response.to_vec().unwrap(), true),
            Parsed::Ignored
        ));
        assert!(matches!(parse(&[1, 2, 3], true), Parsed::Ignored));
    }

    #[test]
    fn two_questions_are_a_format_error_under_the_client_id() {
        let mut message = query("web.");
        message.add_query(Query::query(
            Name::from_ascii("db.").unwrap(),
            RecordType::A,
        ));
        let Parsed::Rejected(reply) = parse(&message.to_vec().unwrap(), false) else {
            panic!("two questions were not refused");
        };
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.id(), 0x4242);
        assert_eq!(reply.response_code(), ResponseCode::FormErr);
        assert!(reply.recursion_desired());
    }

    #[test]
    fn other_opcodes_are_not_implemented() {
        let mut message = query("web.");
        message.set_op_code(OpCode::Status);
        let Parsed::Rejected(reply) = parse(&message.to_vec().unwrap(), true) else {
            panic!("a status query was not refused");
        };
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.response_code(), ResponseCode::NotImp);
        assert!(reply.recursion_available());
    }

    #[test]
    fn udp_limit_follows_edns_between_512_and_4096() {
        let mut message = query("web.");
        assert_eq!(limit(&message, Transport::Udp), 512);
        assert_eq!(limit(&message, Transport::Tcp), MAX_TCP);
        message
            .extensions_mut()
            .get_or_insert_with(Edns::new)
            .set_max_payload(1232);
        assert_eq!(limit(&message, Transport::Udp), 1232);
        message
            .extensions_mut()
            .get_or_insert_with(Edns::new)
            .set_max_payload(u16::MAX);
        assert_eq!(limit(&message, Transport::Udp), MAX_UDP);
    }

    #[test]
    fn a_response_larger_than_the_limit_keeps_its_question_and_sets_tc() {
        let request = query("many.");
        let mut response = response_to(&request, true);
        for i in 0..100 {
            let record = Record::from_rdata(
                Name::from_ascii("many.").unwrap(),
                600,
                RData::A(A(Ipv4Addr::new(10, 0, 0, i))),
            );
            response.add_answer(record);
        }
        let whole = encode(&response, MAX_TCP).unwrap();
        assert_eq!(Message::from_vec(&whole).unwrap().answers().len(), 100);

        let cut = encode(&response, 512).unwrap();
        assert!(cut.len() <= 512);
        let cut = Message::from_vec(&cut).unwrap();
        assert!(cut.truncated());
        assert!(cut.answers().is_empty());
        assert_eq!(cut.queries(), request.queries());
    }

    #[test]
    fn relay_puts_back_the_client_id() {
        let mut upstream = response_to(&query("example.com."), true);
        upstream.set_id(0x9999);
        let bytes = upstream.to_vec().unwrap();
        let answer = Answer {
            bytes,
            message: upstream,
        };
        let relayed = Message::from_vec(&relay(answer, 0x0102, 512).unwrap()).unwrap();
        assert_eq!(relayed.id(), 0x0102);
        assert!(!relayed.truncated());
    }
}
