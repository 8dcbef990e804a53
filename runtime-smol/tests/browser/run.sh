#!/usr/bin/env bash
# Real-browser end-to-end test of the chat example, for CI on a fresh Debian
# machine with Rust, Node 20 and npm. Installs what is missing (Debian's
# chromium, the npm dev dependencies), builds the chat example, runs the test.
#
#   bash runtime-smol/tests/browser/run.sh      # from any directory
#
# Env: CHROMIUM (browser binary, default /usr/bin/chromium), CHAT_BIN (chat
# binary, default built here), CARGO_TARGET_DIR (honoured). Screenshot and logs
# go to ci-artifacts/ at the repository root.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
cd "$ROOT"

if [[ -z "${CHROMIUM:-}" && ! -x /usr/bin/chromium ]]; then
  echo "run.sh: installing chromium (apt-get)" >&2
  SUDO=()
  if [[ "$(id -u)" -ne 0 ]]; then SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

echo "run.sh: npm ci" >&2
(cd "$HERE" && npm ci --no-audit --no-fund)
# The lobby scenario's realtime-js client: the interop suite's pinned packages.
if [[ ! -d transport-ws/interop/node_modules/@supabase/realtime-js || ! -d transport-ws/interop/node_modules/ws ]]; then
  echo "run.sh: npm ci (transport-ws/interop)" >&2
  (cd transport-ws/interop && npm ci --no-audit --no-fund)
fi

if [[ -z "${CHAT_BIN:-}" ]]; then
  echo "run.sh: cargo build --release -p tidings-smol --example chat" >&2
  cargo build --release -p tidings-smol --example chat
  target_dir="${CARGO_TARGET_DIR:-target}"
  [[ "$target_dir" = /* ]] || target_dir="$ROOT/$target_dir"
  CHAT_BIN="$target_dir/release/examples/chat"
fi
export CHAT_BIN

mkdir -p ci-artifacts
node --test runtime-smol/tests/browser/
