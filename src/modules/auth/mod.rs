//! The auth module: who a request comes from. `conf` parses the `[auth]` section; `firebase`
//! verifies Firebase ID tokens offline against the certificates Google publishes. Nothing here is
//! wired into HTTP yet.

pub mod conf;
pub mod firebase;

pub use conf::AuthConf;
