//! Differential fuzzing of the router: random op sequences run against the
//! real `Router` and the naive reference model of `core/tests/model/`, which
//! panics (with the op, both outputs and the state) on the first difference.
#![no_main]

#[allow(dead_code)] // helpers only the proptest suite uses
#[path = "../../core/tests/model/mod.rs"]
mod model;

use libfuzzer_sys::fuzz_target;
use model::harness::{Op, run};

/// Longer sequences add little and slow every run down.
const MAX_OPS: usize = 100;

fuzz_target!(|ops: Vec<Op>| {
    run(&ops[..ops.len().min(MAX_OPS)]);
});
