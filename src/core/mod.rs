//! The protocol-free engine: configuration, listeners, processes, the event loop, timers,
//! logging and the queue engine.

pub mod config;
pub mod queue;
