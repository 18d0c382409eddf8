//! Arbitrary bytes through the MQTT decoder: nothing may panic, the result must not depend on how
//! the input is split, and every decoded packet must survive encode -> decode
//! (`bizzy::mqtt::codec::fuzz_decode` holds the checks, so a proptest runs them too).
//! Run with `cargo +nightly fuzz run mqtt_decode` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bizzy::mqtt::codec::fuzz_decode(data);
});
