//! The auth module: who a request comes from. `conf` parses the `[auth]` section.

pub mod conf;

pub use conf::AuthConf;
