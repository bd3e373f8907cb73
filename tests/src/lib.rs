//! The simulation harness for `sfu`: a virtual clock and network, client peers that behave like
//! mediasoup-client, and pcap replay. The integration tests live in `tests/tests/`.
pub mod client;
pub mod dd;
pub mod decodable;
pub mod delivery;
pub mod forge;
pub mod garble;
pub mod layers;
pub mod media;
pub mod netsim;
pub mod pcap;
pub mod plain;
pub mod runtime_suite;
pub mod sim;
pub mod vp8_temporal;
