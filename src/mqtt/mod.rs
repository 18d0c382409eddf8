//! MQTT 3.1.1 server: the codec, sessions, routing and who may do what, and the broker that runs
//! in every worker beside HTTP.

pub mod auth;
pub mod broker;
pub mod codec;
pub mod conf;
pub mod conn;
pub mod ingest;
pub mod link;
pub mod mesh;
pub mod router;
pub mod service;
pub mod session;
pub mod stats;
