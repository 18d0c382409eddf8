//! HTTP/1.1: request parsing, phases, filters and the connection state machine.

pub mod parse;
