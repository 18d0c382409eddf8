//! Request head and body framing.
