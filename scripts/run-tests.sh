#!/usr/bin/env bash
# Runs every test binary of the crate, the slow real-peer ones side by side.
#
# `cargo test` runs its test binaries one after the other. Most of ours finish in seconds; the
# ones that start real peers (Postfix, doveadm, slapd, winbindd, PAM, Dovecot) spend their time
# waiting on those processes and share no state (each starts its own peers under its own temp
# dir, on its own ports and sockets), so they run in parallel groups here. Tests that time
# answers keep their own margins; the groups are chosen so that no two CPU-heavy files share a
# slot on a 2-core machine.
#
# Every binary's output is kept and printed whole, in a fixed order, with libtest's own
# "test result:" lines; the script fails if any binary fails or if a binary cannot be found.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# name -> executable, from cargo's own build plan (no second build: it is already built).
declare -A exe
while IFS=$'\t' read -r name path; do
  exe[$name]=$path
done < <(cargo test --all-targets --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"].get("test"):
        kind = m["target"]["kind"][0]
        name = m["target"]["name"] if kind == "test" else kind + ":" + m["target"]["name"]
        print(name + "\t" + m["executable"])
')

[ ${#exe[@]} -gt 0 ] || { echo "run-tests: no test binaries found" >&2; exit 1; }

# The slow files, in groups that run at the same time (each group runs its files in order).
groups=(
  "real_peers"
  "hardening_requests hardening_sockets system_users dovecot_wire"
  "e2e_pam_winbind winbind pam ldap dovecot_imap"
)
slow=" ${groups[*]} "

run_one() { # name
  local name=$1 rc=0
  "${exe[$name]}" >"$logs/$name.log" 2>&1 || rc=$?
  echo "$rc" >"$logs/$name.rc"
}

# 1. Everything fast, one after the other.
order=()
for name in $(printf '%s\n' "${!exe[@]}" | sort); do
  case "$slow" in *" $name "*) continue ;; esac
  order+=("$name")
  run_one "$name"
done

# 2. The slow groups side by side.
pids=()
for group in "${groups[@]}"; do
  (
    for name in $group; do
      [ -n "${exe[$name]:-}" ] || continue
      run_one "$name"
    done
  ) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for group in "${groups[@]}"; do
  for name in $group; do [ -n "${exe[$name]:-}" ] && order+=("$name"); done
done

failed=()
for name in "${order[@]}"; do
  echo "==> $name (${exe[$name]})"
  cat "$logs/$name.log"
  [ "$(cat "$logs/$name.rc")" = 0 ] || failed+=("$name")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "run-tests: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "run-tests: all ${#order[@]} test binaries passed"
