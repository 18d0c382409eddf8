//! MQTT 3.1.1 server: the codec, sessions, routing and who may do what.

pub mod auth;
pub mod codec;
pub mod router;
