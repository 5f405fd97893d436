//! Fuzzing on stable Rust (no nightly here for cargo-fuzz): a mutation
//! fuzzer over the kept corpus in fuzz/corpus/<target>/, for the parsers
//! that read untrusted bytes. Each target runs FREEZEFS_FUZZ_SECS seconds
//! (default 60); a crash or a broken invariant saves the input in
//! fuzz/crashes/ and fails.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::fuzzkit;

use freezefs::DefaultTimeout;
use freezefs::fuzzing;
use fuzzkit::{Rng, corpus, crate_dir, mutate, seconds};

fn save_crash(target: &str, input: &[u8]) -> PathBuf {
    let dir = crate_dir().join("fuzz/crashes").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "crash-{:016x}",
        Rng::new(input.len() as u64 + 7).next()
    ));
    std::fs::write(&path, input).unwrap();
    path
}

/// Runs `check` on mutated inputs for the time budget; it returns an error
/// text when an invariant breaks. Returns the number of executions.
fn fuzz(target: &str, seed: u64, check: impl Fn(&[u8]) -> Result<(), String>) -> u64 {
    let mut corpus = corpus(target);
    let mut rng = Rng::new(seed);
    let end = Instant::now() + Duration::from_secs(seconds());
    let mut runs = 0u64;
    while Instant::now() < end {
        for _ in 0..256 {
            let base = corpus[rng.below(corpus.len())].clone();
            let input = mutate(&mut rng, &base, &corpus);
            let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
            runs += 1;
            match outcome {
                Ok(Ok(())) => {
                    // Keep some inputs to mutate further (in memory only).
                    if rng.below(64) == 0 && corpus.len() < 4096 {
                        corpus.push(input);
                    }
                }
                Ok(Err(why)) => panic!(
                    "{target}: {why}; input saved in {}",
                    save_crash(target, &input).display()
                ),
                Err(_) => panic!(
                    "{target}: panic; input saved in {}",
                    save_crash(target, &input).display()
                ),
            }
        }
    }
    eprintln!(
        "fuzz {target}: {runs} executions in {} s, 0 crashes",
        seconds()
    );
    runs
}

#[test]
fn fuzz_the_sysconfigtab_parser() {
    let runs = fuzz(
        "sysconfigtab",
        0x5eed_0001,
        |input| match fuzzing::sysconfigtab(input) {
            DefaultTimeout::Seconds(0) => Err("a zero default".into()),
            _ => Ok(()),
        },
    );
    assert!(runs > 1000);
}

#[test]
fn fuzz_the_mountinfo_parser() {
    let runs = fuzz("mountinfo", 0x5eed_0002, |input| {
        for (raw, again) in fuzzing::mountinfo(input) {
            if raw != again {
                return Err(format!("escape round trip: {raw:?} -> {again:?}"));
            }
        }
        Ok(())
    });
    assert!(runs > 1000);
}

#[test]
fn fuzz_the_record_parser() {
    let runs = fuzz("record", 0x5eed_0003, |input| {
        match fuzzing::record(input) {
            Some(false) => Err("a record that does not survive writing back".into()),
            _ => Ok(()),
        }
    });
    assert!(runs > 1000);
}

#[test]
fn fuzz_the_holder_request_parser() {
    let runs = fuzz(
        "holder-request",
        0x5eed_0004,
        |input| match fuzzing::holder_request(input) {
            Some(false) => Err("a request that does not survive encoding".into()),
            _ => Ok(()),
        },
    );
    assert!(runs > 1000);
}

#[test]
fn fuzz_the_holder_answer_parser() {
    let runs = fuzz(
        "holder-answer",
        0x5eed_0005,
        |input| match fuzzing::holder_answer(input) {
            Some(false) => Err("an answer that does not survive encoding".into()),
            _ => Ok(()),
        },
    );
    assert!(runs > 1000);
}
