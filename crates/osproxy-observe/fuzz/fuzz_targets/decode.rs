//! Fuzzes the directive decoder: arbitrary bytes never panic it, and whatever
//! it accepts round-trips through the canonical encoder and evaluates the
//! same through the index as through the linear scan.
//!
//! The check itself lives in the crate's tests so that `tests/fuzz_corpus.rs`
//! replays the checked-in corpus through exactly the same code on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/fuzz_check.rs"]
mod fuzz_check;

fuzz_target!(|data: &[u8]| {
    fuzz_check::check_decode(data);
});
