//! Bizzy: a real-time venue occupancy server built like nginx.
//!
//! A root master process reads the configuration, binds every listening socket and forks
//! single-threaded worker processes that run an event loop over HTTP (and later MQTT)
//! connections. Dependencies run one way: `modules` -> `http`, `mqtt` -> `core`, with
//! `core::queue` at the bottom. `core` knows no protocol; `http` reaches the worker loop through
//! the [`core::event::Service`] and [`core::event::Conn`] traits, and features reach `http` through registered phase
//! handlers and filters.

pub mod core;
pub mod http;
pub mod modules;
pub mod mqtt;
pub mod server;
