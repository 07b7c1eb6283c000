//! One message from a client to the bytes sent back, whichever transport carried it.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use tokio::sync::OwnedSemaphorePermit;

use crate::forward::Forwarder;
use crate::local::Local;
use crate::message::{self, encode, error_reply, relay, Parsed, Transport};
use crate::{Config, Names};

/// What the server does with one message from a client.
pub(crate) enum Action {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Ask the upstream servers, then send back what [`Server::forward`] makes of it.
    Forward(Box<Pending>),
    /// Send nothing.
    Drop,
}

/// A query on its way upstream, holding one of the server's forwarding slots until it is done.
pub(crate) struct Pending {
    query: Message,
    /// The client's own upstreams, if it has them.
    upstream: Option<Vec<std::net::SocketAddr>>,
    limit: usize,
    transport: Transport,
    _slot: OwnedSemaphorePermit,
}

/// The answering and forwarding of one network's DNS server.
pub(crate) struct Server {
    local: Local,
    forwarder: Forwarder,
}

impl Server {
    pub fn new(network: String, names: Arc<dyn Names>, config: &Config) -> Self {
        let forwarder = Forwarder::new(
            config.upstream.clone(),
            config.forward_timeout,
            config.max_inflight,
        );
        let local = Local {
            network,
            names,
            ttl: config.ttl,
            recursion_available: forwarder.has_upstream(),
        };
        Server { local, forwarder }
    }

    /// What to do with `bytes` from `client`: answer a container name at once, refuse what is
    /// no single-question query, and take a forwarding slot for the rest, or refuse the query
    /// when none is free.
    pub fn handle(&self, bytes: &[u8], client: IpAddr, transport: Transport) -> Action {
        let recursion_available = self.local.recursion_available;
        let query = match message::parse(bytes, recursion_available) {
            Parsed::Query(query) => query,
            Parsed::Rejected(reply) => return Action::Reply(reply),
            Parsed::Ignored => return Action::Drop,
        };
        let limit = message::limit(&query, transport);
        let reply = if let Some(response) = self.local.answer(&query, client) {
            encode(&response, limit)
        } else if let Some(slot) = self.forwarder.slot() {
            return Action::Forward(Box::new(Pending {
                upstream: self.local.names.upstream(&self.local.network, client),
                query,
                limit,
                transport,
                _slot: slot,
            }));
        } else {
            tracing::debug!(network = %self.local.network, %client, "too many queries forwarded at once, refused one");
            error_reply(&query, ResponseCode::Refused, recursion_available, limit)
        };
        reply.map_or(Action::Drop, Action::Reply)
    }

    /// The upstreams' answer to a forwarded query under the client's ID, or SERVFAIL when none
    /// answered in time.
    pub async fn forward(&self, pending: Box<Pending>) -> Option<Vec<u8>> {
        let Pending {
            query,
            upstream,
            limit,
            transport,
            _slot,
        } = *pending;
        match self
            .forwarder
            .ask(&query, transport, upstream.as_deref())
            .await
        {
            Some(answer) => relay(answer, query.id(), limit),
            None => error_reply(
                &query,
                ResponseCode::ServFail,
                self.local.recursion_available,
                limit,
            ),
        }
    }

    /// The bytes to send back for `bytes`, waiting for the upstreams when the query goes there.
    pub async fn reply(
        &self,
        bytes: &[u8],
        client: IpAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        match self.handle(bytes, client, transport) {
            Action::Reply(reply) => Some(reply),
            Action::Forward(pending) => self.forward(pending).await,
            Action::Drop => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::op::{Edns, Query};
    use hickory_proto::rr::{DNSClass, Name, RecordType};
    use proptest::prelude::*;

    /// Every name is a container with one address, every address is `web`.
    struct Everything;

    impl Names for Everything {
        fn lookup(&self, _: &str, _: IpAddr, _: &str) -> Option<Vec<IpAddr>> {
            Some(vec![Ipv4Addr::new(172, 16, 0, 2).into()])
        }
        fn reverse(&self, _: &str, _: Ipv4Addr) -> Option<String> {
            Some("web".to_string())
        }
    }

    fn server(max_inflight: usize) -> Server {
        let config = Config {
            max_inflight,
            ..Config::default()
        };
        Server::new("bridge".to_string(), Arc::new(Everything), &config)
    }

    /// Encoded DNS headers followed by arbitrary bytes, to get past the header checks often.
    fn almost_queries() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<u16>(),
            0u8..4,
            0u8..3,
            proptest::collection::vec(any::<u8>(), 0..600),
        )
            .prop_map(|(id, flags, questions, rest)| {
                // Flags, up to two questions and up to two additional records counted.
                let additional = (rest.len() % 3) as u8;
                let mut bytes = id.to_be_bytes().to_vec();
                bytes.extend_from_slice(&[flags, 0, 0, questions, 0, 0, 0, 0, 0, additional]);
                bytes.extend_from_slice(&rest);
                bytes
            })
    }

    /// Real queries of any type, class and EDNS size, some with one byte overwritten.
    fn mangled_queries() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 0..4),
                any::<[u8; 4]>().prop_map(|address| {
                    let mut labels: Vec<Vec<u8>> = address
                        .iter()
                        .map(|octet| octet.to_string().into_bytes())
                        .collect();
                    labels.extend([b"in-addr".to_vec(), b"arpa".to_vec()]);
                    labels
                }),
            ],
            prop_oneof![Just(1u16), Just(28), Just(12), Just(255), any::<u16>()],
            prop_oneof![Just(1u16), any::<u16>()],
            proptest::option::of(any::<u16>()),
            proptest::option::of((any::<usize>(), any::<u8>())),
        )
            .prop_map(|(labels, record_type, class, payload, damage)| {
                let mut question = Query::query(
                    Name::from_labels(labels).unwrap(),
                    RecordType::from(record_type),
                );
                question.set_query_class(DNSClass::from(class));
                let mut query = Message::new();
                query.add_query(question);
                if let Some(payload) = payload {
                    query
                        .extensions_mut()
                        .get_or_insert_with(Edns::new)
                        .set_max_payload(payload);
                }
                let mut bytes = query.to_vec().unwrap();
                if let Some((at, byte)) = damage {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
                bytes
            })
    }

    /// A reply within `limit` bytes that parses, under the ID of the query it answers.
    fn check_reply(query: &[u8], reply: &[u8], limit: usize) {
        assert!(reply.len() <= limit);
        let reply = Message::from_vec(reply).expect("the server sent a reply it cannot read back");
        assert_eq!(reply.id().to_be_bytes(), query[..2]);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_and_replies_stay_within_bounds(
            bytes in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..700),
                almost_queries(),
                mangled_queries(),
            ],
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let server = server(1);
            for transport in [Transport::Udp, Transport::Tcp] {
                let limit = match transport {
                    Transport::Udp => message::MAX_UDP,
                    Transport::Tcp => message::MAX_TCP,
                };
                // Without upstream servers, forwarding ends in SERVFAIL at once.
                let reply = runtime.block_on(server.reply(&bytes, IpAddr::V6(Ipv6Addr::LOCALHOST), transport));
                if let Some(reply) = reply {
                    check_reply(&bytes, &reply, limit);
                }
            }
        }
    }

    #[test]
    fn a_query_without_a_free_slot_is_refused() {
        let server = server(1);
        let mut query = Message::new();
        query.set_id(9).add_query(Query::query(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::MX,
        ));
        let bytes = query.to_vec().unwrap();
        let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let held = server.handle(&bytes, client, Transport::Udp);
        assert!(matches!(held, Action::Forward(_)));
        let Action::Reply(refused) = server.handle(&bytes, client, Transport::Udp) else {
            panic!("a second forward got past a single slot");
        };
        let refused = Message::from_vec(&refused).unwrap();
        assert_eq!(refused.response_code(), ResponseCode::Refused);
        assert_eq!(refused.id(), 9);
        drop(held);
        assert!(matches!(
            server.handle(&bytes, client, Transport::Udp),
            Action::Forward(_)
        ));
    }
}
