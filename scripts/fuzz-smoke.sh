#!/usr/bin/env bash
# Fuzz smoke test: build every cargo-fuzz target in fuzz/ once, then run each one briefly on the
# committed seeds (fuzz/corpus/<target>/seed-*) with the protocol dictionary. Fails (non-zero)
# if the build fails or any target crashes, panics, leaks, times out or runs out of memory.
#
# With a nightly toolchain the targets are built with AddressSanitizer (`cargo +nightly fuzz`);
# without one, on stable with `--sanitizer none`. cargo-fuzz is installed when missing.
#
# Knobs (environment):
#   FUZZ_SMOKE_SECONDS   seconds each target runs (default 8)
#   FUZZ_SMOKE_JOBS      targets run at once (default 2, one per core on CI)
#   FUZZ_SMOKE_TARGETS   space-separated subset of targets (default: all of `cargo fuzz list`)
#   FUZZ_TARGET_DIR      cargo target dir for the fuzz build (default fuzz/target)
#   FUZZ_TOOLCHAIN       force a toolchain: nightly or stable
#
# Budget on 2 cores: about 3-3.5 minutes of build from scratch (well under a minute when the
# target dir is warm), then ceil(targets / jobs) x FUZZ_SMOKE_SECONDS of fuzzing. Every target
# in fuzz/Cargo.toml runs (`cargo fuzz list`). With 13 targets a cold run took 267 s at 10 s each
# (build 187 s, fuzzing 79 s); 8 s keeps it near 4 minutes, under the 5-minute CI budget.
# With 14 targets (master_session added) it is still ceil(14 / 2) = 7 rounds of 8 s.
# With 15 targets (winbind_reply added) it is ceil(15 / 2) = 8 rounds of 8 s.
#
# New inputs found during the run go to a temporary folder, so the checkout stays clean. A crash
# leaves its input in fuzz/artifacts/<target>/ and prints it; reproduce it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<crash-file>
# and, once fixed, keep it in fuzz/regressions/<target>/ (see fuzz/regressions/README.md).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
started=$SECONDS

seconds=${FUZZ_SMOKE_SECONDS:-8}
jobs=${FUZZ_SMOKE_JOBS:-2}
target_dir=${FUZZ_TARGET_DIR:-$root/fuzz/target}
triple=$(rustc -vV | sed -n 's/^host: //p')

log() { printf 'fuzz-smoke: %s\n' "$*" >&2; }

# --- toolchain and cargo-fuzz -------------------------------------------------------------------
toolchain=${FUZZ_TOOLCHAIN:-}
if [[ -z $toolchain ]]; then
    if cargo +nightly --version >/dev/null 2>&1; then toolchain=nightly; else toolchain=stable; fi
fi
if [[ $toolchain == nightly ]]; then
    cargo_fuzz=(cargo +nightly fuzz)
    sanitizer=address
else
    cargo_fuzz=(cargo fuzz)
    sanitizer=none
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo-fuzz is missing; installing it"
    cargo install cargo-fuzz --locked
fi
log "$(cargo fuzz --version), toolchain $toolchain, sanitizer $sanitizer"

# --- build --------------------------------------------------------------------------------------
# The same flags must be used for every build of this target dir, or cargo rebuilds everything.
build_flags=(--sanitizer "$sanitizer" --target-dir "$target_dir" --codegen-units 16)
build_start=$SECONDS
"${cargo_fuzz[@]}" build "${build_flags[@]}"
build_secs=$((SECONDS - build_start))
log "built in ${build_secs}s"
bin_dir=$target_dir/$triple/release

if [[ -n ${FUZZ_SMOKE_TARGETS:-} ]]; then
    read -r -a targets <<<"$FUZZ_SMOKE_TARGETS"
else
    mapfile -t targets < <("${cargo_fuzz[@]}" list)
fi
[[ ${#targets[@]} -gt 0 ]] || { log "no fuzz targets found"; exit 1; }

# --- run ----------------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/saslgate-fuzz-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Runs one target; writes its log to $work/<t>.log and its status to $work/<t>.rc.
run_target() {
    local t=$1
    local corpus=$work/corpus/$t
    local seeds=$root/fuzz/corpus/$t
    local artifacts=$root/fuzz/artifacts/$t/
    mkdir -p "$corpus" "$artifacts" "$seeds"
    local dirs=("$corpus" "$seeds")
    # Inputs that once crashed a target are replayed on every run.
    [[ -d $root/fuzz/regressions/$t ]] && dirs+=("$root/fuzz/regressions/$t")
    local rc=0
    # libFuzzer writes new inputs to the first corpus folder only: the seeds stay untouched.
    # -timeout: one input taking this long is a hang. The outer timeout is a last resort.
    timeout $((seconds + 120)) "$bin_dir/$t" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -dict="$root/fuzz/auth.dict" -artifact_prefix="$artifacts" -print_final_stats=1 \
        "${dirs[@]}" >"$work/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$work/$t.rc"
}

if [[ -z ${ASAN_OPTIONS:-} ]]; then
    # What cargo-fuzz sets: Rust's std and our deps trip the ODR checker needlessly.
    export ASAN_OPTIONS=detect_odr_violation=0
fi

run_start=$SECONDS
running=0
for t in "${targets[@]}"; do
    [[ -x $bin_dir/$t ]] || { log "missing binary for $t"; echo 1 >"$work/$t.rc"; continue; }
    run_target "$t" &
    running=$((running + 1))
    if ((running >= jobs)); then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true
run_secs=$((SECONDS - run_start))

# --- report -------------------------------------------------------------------------------------
passed=0
failed=0
printf '%-24s %8s %10s %8s %7s  %s\n' target seconds execs exec/s corpus result >&2
for t in "${targets[@]}"; do
    rc=$(cat "$work/$t.rc" 2>/dev/null || echo 1)
    logf=$work/$t.log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf" 2>/dev/null | tail -1 || true)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logf" 2>/dev/null | tail -1 || true)
    ran=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$logf" 2>/dev/null | tail -1 || true)
    corp=$(grep -Eo 'corp: [0-9]+' "$logf" 2>/dev/null | tail -1 | cut -d' ' -f2 || true)
    if [[ $rc == 0 ]]; then
        passed=$((passed + 1))
        result=ok
    else
        failed=$((failed + 1))
        result="FAILED (exit $rc)"
    fi
    printf '%-24s %8s %10s %8s %7s  %s\n' "$t" "${ran:--}" "${execs:--}" "${rate:--}" "${corp:--}" "$result" >&2
done

for t in "${targets[@]}"; do
    rc=$(cat "$work/$t.rc" 2>/dev/null || echo 1)
    [[ $rc == 0 ]] && continue
    log "---- $t failed (exit $rc); last lines of its log:"
    tail -n 60 "$work/$t.log" >&2 || true
    crash=$(sed -n "s/.*Test unit written to \(.*\)$/\1/p" "$work/$t.log" | tail -1 || true)
    if [[ -n $crash && -f $crash ]]; then
        log "reproducer $crash ($(wc -c <"$crash") bytes), as hex:"
        od -An -tx1 -v "$crash" | head -n 40 >&2
        log "reproduce: ${cargo_fuzz[*]} run --sanitizer $sanitizer $t $crash"
    fi
done

log "build ${build_secs}s, fuzzing ${run_secs}s (${#targets[@]} targets x ${seconds}s, $jobs at a time), total $((SECONDS - started))s"
echo "fuzz-smoke: $passed passed, $failed failed"
[[ $failed == 0 ]]
