//! Replays the fuzz target's checked-in corpus (`fuzz/corpus/decode/`) through
//! the fuzz target's own check on stable, so every CI run re-checks the
//! inputs the fuzzer found interesting.

mod common;

use std::path::PathBuf;

use osproxy_core::ManualClock;
use osproxy_observe::decode_directive_set;

#[allow(clippy::unwrap_used)] // a test helper: an unreadable corpus fails the test
fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_passes_the_fuzz_check() {
    let files = corpus();
    assert!(files.len() >= 20, "only {} corpus files", files.len());
    for (name, data) in &files {
        let outcome = std::panic::catch_unwind(|| common::fuzz_check::check_decode(data));
        assert!(outcome.is_ok(), "fuzz check failed on {name}");
    }
}

/// Hand-written inputs are named by what they are: `valid-*` decodes, `bad-*`
/// is rejected; anything else (`edge-*`, or the hash names libFuzzer gives new
/// inputs) may go either way. Keeps the corpus meaningful as well as
/// crash-free.
#[test]
fn corpus_inputs_are_what_their_names_say() {
    let clock = ManualClock::new();
    let (mut valid, mut bad) = (0, 0);
    for (name, data) in corpus() {
        let result = decode_directive_set(&data, &clock);
        if name.starts_with("valid-") {
            valid += 1;
            assert!(result.is_ok(), "{name}: {:?}", result.err());
        } else if name.starts_with("bad-") {
            bad += 1;
            assert!(result.is_err(), "{name} was accepted");
        }
    }
    assert!(valid >= 5 && bad >= 10, "{valid} valid, {bad} bad");
}
