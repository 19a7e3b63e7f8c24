#!/usr/bin/env bash
# The whole test suite, from any directory:
#   1. scripts/install-deps.sh   real peers (dovecot-core, postfix, swaks); installs as root
#   2. cargo fmt --check, then cargo build --all-targets
#   3. scripts/run-tests.sh      every test binary of `cargo test --all-targets`: the fast ones in
#                                turn, the real-peer ones (Postfix, doveadm, slapd, winbindd, PAM)
#                                in parallel groups; most real-peer tests need root
#   4. scripts/fuzz-smoke.sh     when present and executable
# Stops at the first failing step and prints a summary either way.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

summary=()
current=
started=$SECONDS

finish() {
  local rc=$?
  echo
  echo "==> summary ($(pwd))"
  local line
  for line in "${summary[@]}"; do echo "  $line"; done
  if [ -n "$current" ]; then echo "  FAIL  $current (exit $rc)"; fi
  if [ "$rc" -eq 0 ]; then
    echo "==> all steps passed in $((SECONDS - started))s"
  else
    echo "==> FAILED after $((SECONDS - started))s (exit $rc)"
  fi
}
trap finish EXIT

step() { # name command...
  local name=$1 t0=$SECONDS
  shift
  current=$name
  echo
  echo "==> $name"
  "$@"
  summary+=("ok    $name ($((SECONDS - t0))s)")
  current=
}

step "scripts/install-deps.sh" bash scripts/install-deps.sh
if cargo fmt --version >/dev/null 2>&1; then
  step "cargo fmt --check (rustfmt.toml)" cargo fmt --check
else
  summary+=("skip  cargo fmt --check (no rustfmt on this toolchain)")
fi
step "cargo build --all-targets" cargo build --all-targets
step "scripts/run-tests.sh (every test binary; real-peer ones side by side)" scripts/run-tests.sh
if [ -f scripts/fuzz-smoke.sh ] && [ -x scripts/fuzz-smoke.sh ]; then
  step "scripts/fuzz-smoke.sh" scripts/fuzz-smoke.sh
else
  summary+=("skip  scripts/fuzz-smoke.sh (not present or not executable)")
fi
