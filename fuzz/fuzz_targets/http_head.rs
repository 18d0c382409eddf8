//! Arbitrary bytes through the request-head parser, the path normaliser and the chunked
//! decoder: none may panic, and the chunked result must not depend on how input is split
//! (`bizzy::http::parse::fuzz_head` holds the checks, so a proptest runs them too).
//! Run with `cargo +nightly fuzz run http_head` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bizzy::http::parse::fuzz_head(data);
});
