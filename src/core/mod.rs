//! The protocol-free engine: configuration, cycles and listeners, processes, the event loop,
//! timers, shared memory, logging and the queue engine.

pub mod config;
pub mod cycle;
pub mod event;
pub mod every;
pub mod io;
pub mod listen;
pub mod log;
pub mod process;
pub mod queue;
pub mod shm;
pub mod stats;
pub mod timer;
