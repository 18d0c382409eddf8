//! The queue engine: ZeroMQ-style messaging between threads and processes.
