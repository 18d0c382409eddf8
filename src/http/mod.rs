//! HTTP/1.1: request parsing, phases, filters and the connection state machine.

pub mod conf;
pub mod conn;
pub mod date;
pub mod error;
pub mod filter;
pub mod location;
pub mod module;
pub mod parse;
pub mod phase;
pub mod request;
pub mod response;
pub mod runtime;
pub mod service;
pub mod stats;
pub mod stream;

pub use conf::PROTOCOL;
pub use error::HttpError;
pub use phase::{Flow, Phase};
pub use request::Request;
pub use response::Response;
