#!/usr/bin/env bash
# Side-by-side load test: saslgate vs. the real Dovecot 2.3 auth daemon.
#
# Both servers read the same passwd-file (users in {PLAIN}, SHA512-CRYPT, BLF-CRYPT cost 5 and,
# when `doveadm pw -l` lists it, ARGON2ID, all generated with `doveadm pw`) and are loaded by the
# same client, `saslgate bench` (PLAIN with resp=, C connections x P pipelined requests, only
# successful auths), alternating between the two servers scenario by scenario so both see the
# same background load. Dovecot runs auth-only under a temp dir with auth_cache_size = 0;
# saslgate runs from target/release with a YAML config in the same dir.
# Everything is stopped by PID and removed on exit.
#
# usage: scripts/bench-vs-dovecot.sh [--write-readme] [--runs N] [--keep]
#   --write-readme  put the table between <!-- bench:start --> and <!-- bench:end --> in
#                   README.md (appending a Benchmarks section with the markers if missing)
#   --runs N        runs per scenario and server; the run with the median rate is reported
#   --keep          keep the temp dir (configs, logs) for a look afterwards
#
# Environment knobs: RUNS=1  DURATION=5  SLOW_DURATION=10 (ARGON2ID)  WARMUP=1  PASS=secret
#   IDLE_CONNS=1000 (0 skips the idle-RSS measurement)  SG_LOG_LEVEL=info (saslgate log.level)
#   BENCH_THREADS=1 (threads of the load generator)  NO_BUILD=1 (use the existing binary)
#
# Needs root (Dovecot's master insists on it) and Debian's dovecot-core.
# Total runtime with the defaults: about 1.5 minutes plus the release build.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-1}
DURATION=${DURATION:-5}
SLOW_DURATION=${SLOW_DURATION:-10}
WARMUP=${WARMUP:-1}
PASS=${PASS:-secret}
IDLE_CONNS=${IDLE_CONNS:-1000}
SG_LOG_LEVEL=${SG_LOG_LEVEL:-info}
BENCH_THREADS=${BENCH_THREADS:-1}
WRITE_README=0
KEEP=0

while [ $# -gt 0 ]; do
  case "$1" in
    --write-readme) WRITE_README=1 ;;
    --runs) RUNS=${2:?--runs needs a number}; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$RUNS" in ''|*[!0-9]*|0) echo "--runs must be a positive number" >&2; exit 2 ;; esac

# ---------------------------------------------------------------- preconditions
for tool in dovecot doveadm doveconf; do
  if ! command -v "$tool" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$tool" ]; then
    echo "bench-vs-dovecot: '$tool' not found; install the Debian package dovecot-core" \
         "(apt-get install dovecot-core) to compare with the real Dovecot" >&2
    exit 2
  fi
done
export PATH="$PATH:/usr/sbin:/sbin"
if [ "$(id -u)" -ne 0 ]; then
  echo "bench-vs-dovecot: must run as root (Dovecot's master process requires it)" >&2
  exit 2
fi
for u in dovecot dovenull; do
  if ! id "$u" >/dev/null 2>&1; then
    echo "bench-vs-dovecot: system user '$u' is missing; (re)install dovecot-core" >&2
    exit 2
  fi
done

# ---------------------------------------------------------------- temp dir and cleanup
WORK=$(mktemp -d /tmp/saslgate-bench.XXXXXX)
chmod 0755 "$WORK"
DC_DIR=$WORK/dovecot
SG_DIR=$WORK/saslgate
USERS=$WORK/users.passwd
mkdir -p "$DC_DIR/run" "$DC_DIR/state" "$SG_DIR"
DC_PIDFILE=$DC_DIR/run/master.pid
DC_SOCK=$DC_DIR/run/auth-client
SG_SOCK=$SG_DIR/auth-client
SG_PID=
DC_PID=

stop_saslgate() {
  if [ -n "$SG_PID" ] && kill -0 "$SG_PID" 2>/dev/null; then
    kill -TERM "$SG_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SG_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SG_PID" 2>/dev/null && kill -KILL "$SG_PID" 2>/dev/null || true
    wait "$SG_PID" 2>/dev/null || true
  fi
  SG_PID=
}

stop_dovecot() {
  if [ -n "$DC_PID" ] && kill -0 "$DC_PID" 2>/dev/null; then
    kill -TERM "$DC_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$DC_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$DC_PID" 2>/dev/null && kill -KILL "$DC_PID" 2>/dev/null || true
  fi
  DC_PID=
}

cleanup() {
  stop_saslgate
  stop_dovecot
  if [ "$KEEP" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "building saslgate (release)..." >&2
  (cd "$ROOT" && cargo build --release --quiet)
fi
BIN=$ROOT/target/release/saslgate
[ -x "$BIN" ] || { echo "bench-vs-dovecot: $BIN is missing" >&2; exit 1; }

# ---------------------------------------------------------------- users
HAVE_ARGON=0
if doveadm pw -l | tr ' ' '\n' | grep -qx ARGON2ID; then HAVE_ARGON=1; fi
gen_users() {
  : >"$USERS"
  local uid=5000 name scheme hash
  while read -r name scheme; do
    [ -n "$name" ] || continue
    case "$scheme" in
      PLAIN) hash="{PLAIN}$PASS" ;;
      BLF-CRYPT) hash=$(doveadm pw -s BLF-CRYPT -r 5 -p "$PASS") ;;
      *) hash=$(doveadm pw -s "$scheme" -p "$PASS") ;;
    esac
    echo "$name:$hash:$uid:$uid::$WORK/home/$name::" >>"$USERS"
    uid=$((uid + 1))
  done <<EOF
plain PLAIN
sha512 SHA512-CRYPT
blf BLF-CRYPT
$( [ "$HAVE_ARGON" = 1 ] && echo "argon2id ARGON2ID" )
EOF
  chmod 0644 "$USERS"
}
gen_users

# ---------------------------------------------------------------- Dovecot (auth only)
cat >"$DC_DIR/dovecot.conf" <<EOF
# generated by saslgate's scripts/bench-vs-dovecot.sh: an auth-only Dovecot
protocols = none
base_dir = $DC_DIR/run
state_dir = $DC_DIR/state
log_path = $DC_DIR/dovecot.log
info_log_path = $DC_DIR/dovecot.log
ssl = no
disable_plaintext_auth = no
default_internal_user = dovecot
default_login_user = dovenull
default_client_limit = 5000
auth_mechanisms = plain
auth_cache_size = 0
auth_failure_delay = 0
auth_verbose = no
auth_debug = no
passdb {
  driver = passwd-file
  args = scheme=PLAIN $USERS
}
userdb {
  driver = passwd-file
  args = $USERS
}
service auth {
  client_limit = 5000
  process_min_avail = 1
  unix_listener auth-client {
    mode = 0666
  }
}
service anvil {
  client_limit = 5000
}
EOF

start_dovecot() {
  doveconf -c "$DC_DIR/dovecot.conf" -n >/dev/null
  dovecot -c "$DC_DIR/dovecot.conf"
  for _ in $(seq 1 100); do
    [ -S "$DC_SOCK" ] && [ -s "$DC_PIDFILE" ] && break
    sleep 0.1
  done
  if ! [ -S "$DC_SOCK" ]; then
    echo "dovecot did not come up; log:" >&2; tail -n 30 "$DC_DIR/dovecot.log" >&2; exit 1
  fi
  DC_PID=$(cat "$DC_PIDFILE")
}

# The "dovecot/auth" child of our master (auth workers are "dovecot/auth worker: ...").
dovecot_auth_pid() {
  local p
  for _ in $(seq 1 50); do
    for p in $(pgrep -P "$DC_PID" 2>/dev/null); do
      if [ "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | sed 's/ *$//')" = "dovecot/auth" ]; then
        echo "$p"; return 0
      fi
    done
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- saslgate
cat >"$SG_DIR/saslgate.yaml" <<EOF
# generated by scripts/bench-vs-dovecot.sh
listeners:
  - { path: $SG_SOCK, mode: "0666" }
auth:
  mechanisms: [plain]
  failure_delay: 0s
limits:
  max_connections: 5000
log:
  level: $SG_LOG_LEVEL
passdbs:
  - { driver: passwd-file, path: $USERS, scheme: PLAIN }
EOF

start_saslgate() {
  "$BIN" --config "$SG_DIR/saslgate.yaml" check >/dev/null
  "$BIN" --config "$SG_DIR/saslgate.yaml" >>"$SG_DIR/saslgate.log" 2>&1 &
  SG_PID=$!
  for _ in $(seq 1 100); do
    [ -S "$SG_SOCK" ] && break
    kill -0 "$SG_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ! [ -S "$SG_SOCK" ]; then
    echo "saslgate did not come up; log:" >&2; tail -n 30 "$SG_DIR/saslgate.log" >&2; exit 1
  fi
}

# ---------------------------------------------------------------- measuring
# CPU ticks (user+system) of a set of PIDs, summed.
cpu_ticks() {
  local p sum=0 stat rest
  for p in "$@"; do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${stat##*) }            # fields from 3 on; the command name may contain spaces
    set -- $rest
    sum=$((sum + ${12} + ${13}))  # utime, stime (fields 14 and 15)
  done
  echo "$sum"
}
# The PIDs whose CPU counts for a server: saslgate itself, or Dovecot's master and children.
server_pids() {
  if [ "$1" = dovecot ]; then echo "$DC_PID $(pgrep -P "$DC_PID" | tr '\n' ' ')"; else echo "$SG_PID"; fi
}
kv() { # KEY LINE -> value of KEY=... in a `key=value ...` line
  local f
  for f in $2; do case "$f" in "$1="*) echo "${f#*=}"; return 0 ;; esac; done
  echo "-"
}
fmt_rate() { # 12345.6 -> 12,346; 7.34 -> 7.3
  if LC_ALL=C awk -v v="$1" 'BEGIN { exit !(v < 100) }'; then LC_ALL=C printf "%.1f" "$1"; return; fi
  LC_ALL=C printf "%.0f" "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'
}
fmt_ms() { # 3 significant digits
  LC_ALL=C awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v; else if (v >= 1) printf "%.2f", v; else printf "%.3f", v }'
}

FAILED=0
CLK_TCK=$(getconf CLK_TCK)
# bench_once SERVER SOCKET USER C P DURATION -> "rate p50 p99 cpu% cpu_ms_per_auth", or "error"
bench_once() {
  local server=$1 sock=$2 user=$3 c=$4 p=$5 dur=$6 out rc t0 t1 c0 c1 pids
  pids=$(server_pids "$server")
  c0=$(cpu_ticks $pids); t0=$(date +%s.%N)
  rc=0
  out=$("$BIN" bench --socket "$sock" --user "$user" --password "$PASS" -C "$c" -p "$p" \
        -d "$dur" --warmup "$WARMUP" --threads "$BENCH_THREADS" --kv 2>"$WORK/bench.err") || rc=$?
  t1=$(date +%s.%N); c1=$(cpu_ticks $pids)
  if [ $rc -ne 0 ]; then
    echo "  $server $user C=$c P=$p failed (exit $rc): $(tr '\n' ' ' <"$WORK/bench.err")$out" >&2
    FAILED=1
    echo error
    return
  fi
  # CPU of the whole run (warmup and drain included) over every reply of the whole run.
  local cpu
  cpu=$(LC_ALL=C awk -v d="$((c1 - c0))" -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" -v n="$(kv replies "$out")" \
        'BEGIN { printf "%.0f %.3f", 100 * d / hz / (t1 - t0), (n > 0 ? 1000 * d / hz / n : 0) }')
  echo "  $server $user C=$c P=$p: $(kv rate "$out") auths/s, p50 $(kv p50_ms "$out") ms, p99 $(kv p99_ms "$out") ms;" \
       "server CPU $(echo "$cpu" | cut -d' ' -f1)% of a core, $(echo "$cpu" | cut -d' ' -f2) ms per auth" >&2
  echo "$(kv rate "$out") $(kv p50_ms "$out") $(kv p99_ms "$out") $cpu"
}
# The run with the median rate among the results on stdin ("error" lines are dropped).
median_run() {
  local lines
  lines=$(grep -v '^error$' || true)
  if [ -z "$lines" ]; then echo error; return; fi
  local n; n=$(echo "$lines" | wc -l)
  echo "$lines" | sort -g -k1,1 | sed -n "$(( (n + 1) / 2 ))p"
}

# idle_rss SERVER SOCKET PID -> KB of RSS per idle connection
idle_rss() {
  local sock=$2 pid=$3 before after log=$WORK/idle.out hold=30 bpid
  before=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  "$BIN" bench --socket "$sock" --idle -C "$IDLE_CONNS" -d "$hold" --kv >"$log" 2>&1 &
  bpid=$!
  for _ in $(seq 1 300); do
    grep -q '^idle_connections=' "$log" 2>/dev/null && break
    kill -0 "$bpid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^idle_connections=' "$log"; then
    echo "  $1 idle connections failed: $(cat "$log")" >&2
    kill "$bpid" 2>/dev/null || true; wait "$bpid" 2>/dev/null || true
    echo "error"; return
  fi
  sleep 1
  after=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  kill "$bpid" 2>/dev/null || true
  wait "$bpid" 2>/dev/null || true
  echo "  $1: VmRSS $before KB -> $after KB with $IDLE_CONNS idle connections" >&2
  LC_ALL=C awk -v a="$after" -v b="$before" -v n="$IDLE_CONNS" 'BEGIN { printf "%.1f", (a - b) / n }'
}

# name|user|C|P|duration
SCENARIOS=(
  "\`{PLAIN}\` C=1 P=1|plain|1|1|$DURATION"
  "\`{PLAIN}\` C=16 P=1|plain|16|1|$DURATION"
  "\`{PLAIN}\` C=64 P=4|plain|64|4|$DURATION"
  "SHA512-CRYPT C=16|sha512|16|1|$DURATION"
  "BLF-CRYPT (cost 5) C=16|blf|16|1|$DURATION"
)
[ "$HAVE_ARGON" = 1 ] && SCENARIOS+=("ARGON2ID (64 MiB, t=3) C=16|argon2id|16|1|$SLOW_DURATION")

declare -A RESULT
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "starting Dovecot $(dovecot --version | cut -d' ' -f1) and saslgate; load average $LOAD_BEFORE" >&2
start_dovecot
DC_AUTH_PID=$(dovecot_auth_pid) || { echo "no dovecot/auth process" >&2; exit 1; }
start_saslgate
# Both servers stay up; runs alternate between them so that both see the same background load.
for s in "${SCENARIOS[@]}"; do
  IFS='|' read -r name user c p dur <<<"$s"
  dc_runs=(); sg_runs=()
  for i in $(seq 1 "$RUNS"); do
    dc_runs+=("$(bench_once dovecot "$DC_SOCK" "$user" "$c" "$p" "$dur")")
    sg_runs+=("$(bench_once saslgate "$SG_SOCK" "$user" "$c" "$p" "$dur")")
  done
  RESULT["dovecot|$name"]=$(printf '%s\n' "${dc_runs[@]}" | median_run)
  RESULT["saslgate|$name"]=$(printf '%s\n' "${sg_runs[@]}" | median_run)
done
if [ "$IDLE_CONNS" -gt 0 ]; then
  RESULT["dovecot|idle"]=$(idle_rss dovecot "$DC_SOCK" "$DC_AUTH_PID")
  RESULT["saslgate|idle"]=$(idle_rss saslgate "$SG_SOCK" "$SG_PID")
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
stop_saslgate
stop_dovecot

# ---------------------------------------------------------------- table
cell() { # "rate p50 p99 cpu% cpu_ms" -> "rate | p50 | p99"
  if [ "$1" = error ] || [ -z "$1" ]; then echo "error | — | —"; return; fi
  local rate p50 p99 _
  read -r rate p50 p99 _ <<<"$1"
  echo "$(fmt_rate "$rate") | $(fmt_ms "$p50") | $(fmt_ms "$p99")"
}
cpu_ms() { if [ "$1" = error ] || [ -z "$1" ]; then echo "—"; else fmt_ms "$(echo "$1" | cut -d' ' -f5)"; fi; }

TABLE=$(
  echo "| scenario | Dovecot auths/s | p50 ms | p99 ms | saslgate auths/s | p50 ms | p99 ms | server CPU ms/auth, Dovecot / saslgate |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for s in "${SCENARIOS[@]}"; do
    IFS='|' read -r name _ <<<"$s"
    d=${RESULT["dovecot|$name"]}; g=${RESULT["saslgate|$name"]}
    echo "| $name | $(cell "$d") | $(cell "$g") | $(cpu_ms "$d") / $(cpu_ms "$g") |"
  done
  if [ "$IDLE_CONNS" -gt 0 ]; then
    echo "| $IDLE_CONNS idle connections: RSS per connection | ${RESULT[dovecot|idle]} KB | | | ${RESULT[saslgate|idle]} KB | | | |"
  fi
)
NPROC=$(nproc)
NOTE="Measured $(date -u +%Y-%m-%d) on $NPROC cores (load average $LOAD_BEFORE before, $LOAD_AFTER after) with \
\`scripts/bench-vs-dovecot.sh\`: Dovecot $(dovecot --version | cut -d' ' -f1) auth with auth_cache_size = 0 vs. saslgate \
(log level \`$SG_LOG_LEVEL\`), same passwd-file, load from \`saslgate bench\` (PLAIN with \`resp=\`, every auth succeeds), \
$DURATION s per scenario (ARGON2ID $SLOW_DURATION s) after $WARMUP s of warmup, median of $RUNS run(s), the two servers \
alternating. The load generator shares the machine. CPU ms/auth is the server's user+system time over the whole run \
divided by every reply of the run (Dovecot: master, auth and anvil processes); background load moves it much less than the rates, but it moves it too."
echo
echo "$TABLE"
echo
echo "$NOTE"

if [ "$WRITE_README" = 1 ]; then
  README=$ROOT/README.md
  BLOCK=$(printf '%s\n\n%s\n%s\n%s' "<!-- bench:start -->" "$TABLE" "" "$NOTE")
  BLOCK="$BLOCK
<!-- bench:end -->"
  if [ -f "$README" ] && grep -q '<!-- bench:start -->' "$README" && grep -q '<!-- bench:end -->' "$README"; then
    BLOCK="$BLOCK" awk '
      /<!-- bench:start -->/ { print ENVIRON["BLOCK"]; skip = 1; next }
      /<!-- bench:end -->/ { skip = 0; next }
      !skip { print }
    ' "$README" >"$README.tmp" && mv "$README.tmp" "$README"
    echo "updated the table in $README" >&2
  elif [ -f "$README" ]; then
    printf '\n## Benchmarks\n\n%s\n' "$BLOCK" >>"$README"
    echo "appended a Benchmarks section to $README" >&2
  else
    OUT=$ROOT/scripts/bench-results.md
    printf '# saslgate vs. Dovecot 2.3 auth\n\n%s\n' "$BLOCK" >"$OUT"
    echo "README.md does not exist; wrote $OUT" >&2
  fi
fi
exit $FAILED
