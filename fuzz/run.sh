#!/usr/bin/env bash
# Runs every cargo-fuzz target for a while, starting from its seed corpus.
#
#   fuzz/run.sh [seconds] [target ...]
#
# seconds  time per target (default 20)
# target   targets to run (default: every target `cargo fuzz list` reports,
#          so new ones such as router_ops are picked up automatically)
#
# Works from any directory. Runs every target even if one fails, then exits
# non-zero if any target failed to build or found a crash; the crashing
# input is left in fuzz/artifacts/<target>/.
# libFuzzer adds what it finds to fuzz/corpus/<target>/; .gitignore keeps
# only the committed seed-* files there.
set -euo pipefail

secs="${1:-20}"
if [[ $# -gt 0 ]]; then
    shift
fi
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [seconds] [target ...]" >&2
    exit 2
fi

# cargo fuzz must run from the project root, the directory holding fuzz/.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "no fuzz targets found" >&2
    exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    echo "==> $target (${secs}s)" >&2
    # -s none: no sanitizer (the fuzzed crates are safe Rust), which also
    # lets this build on stable. Debug assertions and overflow checks stay
    # on (cargo fuzz's default). A crash makes cargo fuzz exit non-zero and
    # leaves the input in fuzz/artifacts/<target>/; the other targets still
    # run, and the script fails at the end.
    if cargo fuzz run -s none "$target" "$corpus" -- -max_total_time="$secs" 2>&1 | tee "$log" >&2; then
        summary+=("$target: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -n1 || true)")
    else
        failed+=("$target")
        summary+=("$target: FAILED (see fuzz/artifacts/$target/)")
    fi
done

echo "==> summary" >&2
printf '    %s\n' "${summary[@]}" >&2
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "==> ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "==> all ${#targets[@]} targets ran ${secs}s each without a crash" >&2
