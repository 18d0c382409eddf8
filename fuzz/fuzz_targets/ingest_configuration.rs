//! Arbitrary bytes as the payload of `commands/sensor/{id}` (12 bytes, every value in its range):
//! nothing may panic, a refusal has a reason and a log line, and every decoded payload survives
//! encode -> decode (`bizzy::modules::ingest::decode::fuzz_decode` holds the checks, so a proptest
//! runs them too).
//! Run with `cargo +nightly fuzz run ingest_configuration` from the repository root.

#![no_main]

use bizzy::modules::ingest::decode::{fuzz_decode, Channel};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_decode(Channel::Configuration, data);
});
