//! MQTT 3.1.1 server.

pub mod codec;
