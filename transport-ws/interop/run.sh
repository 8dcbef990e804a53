#!/usr/bin/env bash
# The real-client interop suite: builds the interop server example, installs
# the pinned @supabase/realtime-js, phoenix and ws from the lockfile, and
# runs the node:test files here against it.
set -euo pipefail
cd "$(dirname "$0")"
cargo build -p tidings-smol --example interop
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund
fi
npm test
