//! Arbitrary bytes as an MQTT topic through the sensor topic parser: nothing may panic, and a
//! sensor topic has a valid device id and prints back as the same text
//! (`bizzy::modules::ingest::decode::fuzz_topic` holds the checks, so a proptest runs them too).
//! Run with `cargo +nightly fuzz run ingest_topic` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bizzy::modules::ingest::decode::fuzz_topic(data);
});
