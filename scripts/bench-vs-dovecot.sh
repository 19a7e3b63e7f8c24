#!/usr/bin/env bash
# Side-by-side measurement of issue 12's rows: saslgate vs. the real Dovecot 2.3 auth daemon.
#
# Both servers read the same passwd-file (users in {PLAIN}, SHA512-CRYPT and BLF-CRYPT cost 5,
# generated with `doveadm pw`) and are loaded by the same client, `saslgate bench` (PLAIN with
# resp=, C connections x P pipelined requests, every login succeeds), the two servers
# alternating run by run so that both see the same background load. Dovecot runs auth-only
# under a temp dir with auth_cache_size = 0; saslgate runs from target/release on its default
# settings (no log level set) with a YAML config in the same dir. Everything is stopped by PID
# and removed on exit.
#
#   P1   {PLAIN} C=64 P=4: logins/s, and the daemon's CPU per login (user+sys from /proc over
#        the run / every reply; Dovecot: master, auth and anvil). Also the "floor": a trivial
#        server (examples/floor_server.rs) that answers every AUTH with OK, loaded the same way.
#   P2   {PLAIN} C=16 P=1: p99 latency
#   P3   SHA512-CRYPT and BLF-CRYPT (cost 5) C=16: logins/s
#   P4   p99 of one {PLAIN} client (C=1) while 16 clients flood BLF-CRYPT (two bench processes)
#   P5   RSS per idle client connection with IDLE_CONNS held, each server started fresh (at the
#        largest count a server holds when that is less)
#   P6   a passwd-file of BIG_USERS users (~55 MB at 1M), each server started fresh on it:
#        a) start command -> first OK for a user near the end of the file; b) RSS after load /
#        file size; c) slowest reply (max) at C=16 while the file is replaced (new inode and
#        mtime, same users) RELOADS times during a BIG_DURATION s run; d) peak RSS (VmHWM, reset
#        before the run) across those reloads / file size
#
# usage: scripts/bench-vs-dovecot.sh [--write-readme] [--runs N] [--rows P1,P4] [--keep]
#   --write-readme  put the table between <!-- bench:start --> and <!-- bench:end --> in
#                   README.md (appending a Benchmarks section with the markers if missing)
#   --runs N        runs per row and server, the two servers alternating; the median is reported
#   --rows LIST     only these rows (P1..P6, comma-separated; default all)
#   --keep          keep the temp dir (configs, logs) for a look afterwards
#
# Environment knobs: RUNS=3  ROWS=P1,P2,P3,P4,P5,P6  DURATION=5  WARMUP=1  PASS=secret
#   IDLE_CONNS=10000  BIG_USERS=1000000  BIG_DURATION=10  RELOADS=3
#   BENCH_THREADS=1 (threads of the load generator)  FLOOR=1 (0 skips the floor line)
#   SG_LOG_LEVEL= (unset: saslgate's default; set only to compare)  NO_BUILD=1 (use the
#   existing binaries)
#
# Needs root (Dovecot's master insists on it) and Debian's dovecot-core.
# Total runtime with the defaults: about 7 minutes plus the release build.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
ROWS=${ROWS:-P1,P2,P3,P4,P5,P6}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
PASS=${PASS:-secret}
IDLE_CONNS=${IDLE_CONNS:-10000}
BIG_USERS=${BIG_USERS:-1000000}
BIG_DURATION=${BIG_DURATION:-10}
RELOADS=${RELOADS:-3}
BENCH_THREADS=${BENCH_THREADS:-1}
FLOOR=${FLOOR:-1}
SG_LOG_LEVEL=${SG_LOG_LEVEL:-}
WRITE_README=0
KEEP=0

while [ $# -gt 0 ]; do
  case "$1" in
    --write-readme) WRITE_README=1 ;;
    --runs) RUNS=${2:?--runs needs a number}; shift ;;
    --rows) ROWS=${2:?--rows needs a list such as P1,P4}; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$RUNS" in ''|*[!0-9]*|0) echo "--runs must be a positive number" >&2; exit 2 ;; esac
ROWS=$(echo "$ROWS" | tr 'a-z' 'A-Z' | tr -d ' ')
for r in ${ROWS//,/ }; do
  case "$r" in P1|P2|P3|P4|P5|P6) ;; *) echo "--rows: unknown row '$r' (P1..P6)" >&2; exit 2 ;; esac
done
want() { case ",$ROWS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

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
# Idle connections need descriptors on both ends (servers and the generator inherit this).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$IDLE_CONNS" -gt $((NOFILE - 100)) ]; then
  echo "bench-vs-dovecot: open-file limit $NOFILE; holding $((NOFILE - 100)) idle connections instead of $IDLE_CONNS" >&2
  IDLE_CONNS=$((NOFILE - 100))
fi

# ---------------------------------------------------------------- temp dir and cleanup
WORK=$(mktemp -d /tmp/saslgate-bench.XXXXXX)
chmod 0755 "$WORK"
USERS=$WORK/users.passwd
BIG=$WORK/big.passwd
SG_PID=
DC_PID=
FL_PID=
BG_PIDS=

stop_pid() { # PID: TERM, wait up to 5 s, KILL
  local pid=$1
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
stop_saslgate() { stop_pid "$SG_PID"; SG_PID=; }
stop_floor() { stop_pid "$FL_PID"; FL_PID=; }
stop_dovecot() {
  # The master is not our child (it daemonizes); TERM stops its children too.
  if [ -n "$DC_PID" ] && kill -0 "$DC_PID" 2>/dev/null; then
    kill -TERM "$DC_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$DC_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$DC_PID" 2>/dev/null && kill -KILL "$DC_PID" 2>/dev/null || true
  fi
  DC_PID=
}
cleanup() {
  local p
  for p in $BG_PIDS; do kill "$p" 2>/dev/null || true; done
  stop_saslgate
  stop_floor
  stop_dovecot
  if [ "$KEEP" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "building saslgate and the floor server (release)..." >&2
  (cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example floor_server)
fi
BIN=$ROOT/target/release/saslgate
FLOOR_BIN=$ROOT/target/release/examples/floor_server
[ -x "$BIN" ] || { echo "bench-vs-dovecot: $BIN is missing" >&2; exit 1; }
if [ "$FLOOR" = 1 ] && want P1 && ! [ -x "$FLOOR_BIN" ]; then
  echo "bench-vs-dovecot: $FLOOR_BIN is missing (cargo build --release --example floor_server); no floor line" >&2
  FLOOR=0
fi

# ---------------------------------------------------------------- users
gen_users() {
  : >"$USERS"
  local uid=5000 name scheme hash
  while read -r name scheme; do
    case "$scheme" in
      PLAIN) hash="{PLAIN}$PASS" ;;
      BLF-CRYPT) hash=$(doveadm pw -s BLF-CRYPT -r 5 -p "$PASS") ;;
      *) hash=$(doveadm pw -s "$scheme" -p "$PASS") ;;
    esac
    echo "$name:$hash:$uid:$uid::$WORK/home/$name::" >>"$USERS"
    uid=$((uid + 1))
  done <<EOF
plain PLAIN
plain2 PLAIN
sha512 SHA512-CRYPT
blf BLF-CRYPT
EOF
  chmod 0644 "$USERS"
}
gen_users
# The big file: userN:{PLAIN}PASS:uid:gid::/home/userN:: for N = 1..BIG_USERS.
gen_big() {
  LC_ALL=C awk -v n="$BIG_USERS" -v pass="$PASS" 'BEGIN {
    for (i = 1; i <= n; i++) printf "user%d:{PLAIN}%s:%d:%d::/home/user%d::\n", i, pass, 10000 + i % 50000, 10000 + i % 50000, i
  }' >"$1"
  chmod 0644 "$1"
}
BIG_USER=user$((BIG_USERS > 1 ? BIG_USERS - 1 : 1))

# ---------------------------------------------------------------- Dovecot (auth only)
# dovecot_conf DIR PASSWD-FILE: an auth-only Dovecot under DIR.
dovecot_conf() {
  local dir=$1 file=$2 limit=$((IDLE_CONNS + 1000))
  mkdir -p "$dir/run" "$dir/state"
  cat >"$dir/dovecot.conf" <<EOF
# generated by saslgate's scripts/bench-vs-dovecot.sh: an auth-only Dovecot
protocols = none
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
ssl = no
disable_plaintext_auth = no
default_internal_user = dovecot
default_login_user = dovenull
default_client_limit = $limit
default_vsz_limit = 4G
auth_mechanisms = plain
auth_cache_size = 0
auth_failure_delay = 0
auth_verbose = no
auth_debug = no
passdb {
  driver = passwd-file
  args = scheme=PLAIN $file
}
userdb {
  driver = passwd-file
  args = $file
}
service auth {
  client_limit = $limit
  process_min_avail = 1
  unix_listener auth-client {
    mode = 0666
  }
}
service anvil {
  client_limit = $limit
}
EOF
}
DC_MAIN=$WORK/dovecot
DC_BIG=$WORK/dovecot-big
dovecot_conf "$DC_MAIN" "$USERS"

# start_dovecot DIR: starts it and waits for its client socket; sets DC_PID, DC_SOCK, DC_DIR.
start_dovecot() {
  DC_DIR=$1
  DC_SOCK=$DC_DIR/run/auth-client
  doveconf -c "$DC_DIR/dovecot.conf" -n >/dev/null
  rm -f "$DC_SOCK" "$DC_DIR/run/master.pid" # left by an earlier instance
  dovecot -c "$DC_DIR/dovecot.conf"
  for _ in $(seq 1 200); do
    [ -S "$DC_SOCK" ] && [ -s "$DC_DIR/run/master.pid" ] && break
    sleep 0.05
  done
  if ! [ -S "$DC_SOCK" ]; then
    echo "dovecot did not come up; log:" >&2; tail -n 30 "$DC_DIR/dovecot.log" >&2; exit 1
  fi
  DC_PID=$(cat "$DC_DIR/run/master.pid")
}

# dovecot_child NAME: the PID of our master's child "dovecot/NAME" (not "dovecot/auth worker").
dovecot_child() {
  local p
  for _ in $(seq 1 50); do
    for p in $(pgrep -P "$DC_PID" 2>/dev/null); do
      if [ "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | sed 's/ *$//')" = "dovecot/$1" ]; then
        echo "$p"; return 0
      fi
    done
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- saslgate
# saslgate_conf DIR PASSWD-FILE
saslgate_conf() {
  local dir=$1 file=$2
  mkdir -p "$dir"
  {
    echo "# generated by scripts/bench-vs-dovecot.sh (saslgate's defaults, bench-sized limits)"
    echo "listeners:"
    echo "  - { path: $dir/auth-client, mode: \"0666\" }"
    echo "auth:"
    echo "  mechanisms: [plain]"
    echo "  failure_delay: 0s"
    echo "limits:"
    echo "  max_connections: $((IDLE_CONNS + 1000))"
    if [ -n "$SG_LOG_LEVEL" ]; then
      echo "log:"
      echo "  level: \"$SG_LOG_LEVEL\""
    fi
    echo "passdbs:"
    echo "  - { driver: passwd-file, path: $file, scheme: PLAIN }"
  } >"$dir/saslgate.yaml"
}
SG_MAIN=$WORK/saslgate
SG_BIG=$WORK/saslgate-big
saslgate_conf "$SG_MAIN" "$USERS"

# start_saslgate DIR: sets SG_PID, SG_SOCK.
start_saslgate() {
  local dir=$1
  SG_SOCK=$dir/auth-client
  "$BIN" --config "$dir/saslgate.yaml" check >/dev/null
  rm -f "$SG_SOCK" # left by an earlier instance
  "$BIN" --config "$dir/saslgate.yaml" >>"$dir/saslgate.log" 2>&1 &
  SG_PID=$!
  for _ in $(seq 1 200); do
    [ -S "$SG_SOCK" ] && break
    kill -0 "$SG_PID" 2>/dev/null || break
    sleep 0.05
  done
  if ! [ -S "$SG_SOCK" ]; then
    echo "saslgate did not come up; log:" >&2; tail -n 30 "$dir/saslgate.log" >&2; exit 1
  fi
}

start_floor() {
  FL_SOCK=$WORK/floor/auth-client
  mkdir -p "$WORK/floor"
  "$FLOOR_BIN" "$FL_SOCK" >"$WORK/floor/floor.log" 2>&1 &
  FL_PID=$!
  for _ in $(seq 1 100); do [ -S "$FL_SOCK" ] && break; sleep 0.05; done
  [ -S "$FL_SOCK" ] || { echo "the floor server did not come up: $(cat "$WORK/floor/floor.log")" >&2; FLOOR=0; }
}

# ---------------------------------------------------------------- measuring helpers
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # PID... -> user+system ticks, summed
  local p sum=0 stat rest
  for p in "$@"; do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${stat##*) }            # fields from 3 on; the command name may contain spaces
    set -- $rest
    sum=$((sum + ${12} + ${13}))  # utime, stime (fields 14 and 15)
  done
  echo "$sum"
}
status_kb() { # FIELD PID... -> the field of /proc/PID/status (kB), summed
  local f=$1 p sum=0 v
  shift
  for p in "$@"; do
    v=$(awk -v f="$f:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null) || v=0
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
kv() { # KEY LINE -> value of KEY=... in a `key=value ...` line
  local f
  for f in $2; do case "$f" in "$1="*) echo "${f#*=}"; return 0 ;; esac; done
  echo "-"
}
calc() { LC_ALL=C awk "BEGIN { print $* }"; }
fmt_rate() { # 12345.6 -> 12,346
  LC_ALL=C printf "%.0f" "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'
}
fmt3() { # 3 significant digits
  LC_ALL=C awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v; else if (v >= 1) printf "%.2f", v; else printf "%.3f", v }'
}
median() { # numbers on stdin ("error"/"-" dropped) -> the median (lower middle), or "error"
  local lines n
  lines=$(grep -E '^-?[0-9.]+$' || true)
  if [ -z "$lines" ]; then echo error; return; fi
  n=$(echo "$lines" | wc -l)
  echo "$lines" | sort -g | sed -n "$(( (n + 1) / 2 ))p"
}

FAILED=0
NOTES=()
BENCH=("$BIN" bench --password "$PASS" --threads "$BENCH_THREADS" --kv)

# bench_run LABEL SOCKET USER C P DURATION [PIDS...] -> the bench's kv line plus
# "server_cpu_us_per_reply=..." for the PIDs (CPU over the whole run / every reply); "error".
bench_run() {
  local label=$1 sock=$2 user=$3 c=$4 p=$5 dur=$6 out rc c0 c1 cpu
  shift 6
  c0=$(cpu_ticks "$@")
  rc=0
  out=$("${BENCH[@]}" --socket "$sock" --user "$user" -C "$c" -p "$p" -d "$dur" --warmup "$WARMUP" 2>"$WORK/bench.err") || rc=$?
  c1=$(cpu_ticks "$@")
  if [ $rc -ne 0 ]; then
    echo "  $label $user C=$c P=$p failed (exit $rc): $(tr '\n' ' ' <"$WORK/bench.err")$out" >&2
    FAILED=1
    echo error
    return
  fi
  cpu=$(calc "($(kv replies "$out") > 0) ? 1e6 * ($c1 - $c0) / $CLK_TCK / $(kv replies "$out") : 0")
  echo "  $label $user C=$c P=$p: $(kv rate "$out") logins/s, p50 $(kv p50_ms "$out") ms, p99 $(kv p99_ms "$out") ms," \
       "max $(kv max_ms "$out") ms; server CPU $(fmt3 "$cpu") us/login, bench CPU $(kv client_cpu_us_per_reply "$out") us/login" >&2
  echo "$out server_cpu_us_per_reply=$cpu"
}

declare -A R  # R[row|server] = the measured numbers of every run, one per line

add() { R["$1"]="${R["$1"]:-}$2"$'\n'; }
dc_cpu_pids() { echo "$DC_PID $(dovecot_child auth) $(dovecot_child anvil)"; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)
echo "Dovecot $(dovecot --version | cut -d' ' -f1) vs. saslgate; rows $ROWS; $RUNS run(s); load average $LOAD_BEFORE" >&2

# ---------------------------------------------------------------- P1..P5 on the small file
if want P1 || want P2 || want P3 || want P4; then
  start_dovecot "$DC_MAIN"
  DC_AUTH=$(dovecot_child auth) || { echo "no dovecot/auth process" >&2; exit 1; }
  DC_CPU_PIDS=$(dc_cpu_pids)
  start_saslgate "$SG_MAIN"
  if want P1 && [ "$FLOOR" = 1 ]; then start_floor; fi

  # throughput SERVER-LABEL SOCKET USER C P PIDS... -> "rate p99 cpu_us client_cpu_us"
  tp() {
    local out
    out=$(bench_run "$@")
    if [ "$out" = error ]; then echo "error error error error"; return; fi
    echo "$(kv rate "$out") $(kv p99_ms "$out") $(kv server_cpu_us_per_reply "$out") $(kv client_cpu_us_per_reply "$out")"
  }
  for i in $(seq 1 "$RUNS"); do
    echo "run $i of $RUNS" >&2
    if want P1; then
      read -r rate _ cpu ccpu <<<"$(tp dovecot "$DC_SOCK" plain 64 4 "$DURATION" $DC_CPU_PIDS)"
      add "P1rate|dc" "$rate"; add "P1cpu|dc" "$cpu"; add "P1client|dc" "$ccpu"
      read -r rate _ cpu ccpu <<<"$(tp saslgate "$SG_SOCK" plain 64 4 "$DURATION" "$SG_PID")"
      add "P1rate|sg" "$rate"; add "P1cpu|sg" "$cpu"; add "P1client|sg" "$ccpu"
      if [ "$FLOOR" = 1 ]; then
        read -r rate _ cpu ccpu <<<"$(tp floor "$FL_SOCK" plain 64 4 "$DURATION" "$FL_PID")"
        add "P1rate|floor" "$rate"; add "P1cpu|floor" "$cpu"; add "P1client|floor" "$ccpu"
      fi
    fi
    if want P2; then
      read -r _ p99 _ <<<"$(tp dovecot "$DC_SOCK" plain 16 1 "$DURATION" $DC_CPU_PIDS)"; add "P2|dc" "$p99"
      read -r _ p99 _ <<<"$(tp saslgate "$SG_SOCK" plain 16 1 "$DURATION" "$SG_PID")"; add "P2|sg" "$p99"
    fi
    if want P3; then
      for u in sha512 blf; do
        read -r rate _ <<<"$(tp dovecot "$DC_SOCK" "$u" 16 1 "$DURATION" $DC_CPU_PIDS)"; add "P3$u|dc" "$rate"
        read -r rate _ <<<"$(tp saslgate "$SG_SOCK" "$u" 16 1 "$DURATION" "$SG_PID")"; add "P3$u|sg" "$rate"
      done
    fi
    if want P4; then
      for s in dc sg; do
        if [ $s = dc ]; then sock=$DC_SOCK; label=dovecot; else sock=$SG_SOCK; label=saslgate; fi
        # The flood outlasts the measured client: it starts first and ends after it.
        "${BENCH[@]}" --socket "$sock" --user blf -C 16 -p 1 -d "$((DURATION + 1))" --warmup 1 \
          >"$WORK/flood.out" 2>&1 &
        flood=$!
        BG_PIDS="$BG_PIDS $flood"
        sleep 0.5
        out=$(bench_run "$label (with a BLF-CRYPT flood)" "$sock" plain 1 1 "$DURATION")
        rc=0; wait "$flood" || rc=$?
        if [ $rc -ne 0 ]; then
          echo "  $label BLF-CRYPT flood failed (exit $rc): $(tr '\n' ' ' <"$WORK/flood.out")" >&2
          FAILED=1
        else
          echo "  $label flood: $(kv rate "$(cat "$WORK/flood.out")") BLF-CRYPT logins/s" >&2
        fi
        if [ "$out" = error ]; then add "P4|$s" error; else add "P4|$s" "$(kv p99_ms "$out")"; fi
      done
    fi
  done
  stop_floor
  stop_saslgate
  stop_dovecot
fi

# ---------------------------------------------------------------- P5 on fresh servers
# A server keeps the memory of connections it has closed (the allocator does not give it
# back), so every run starts both servers afresh: "before" is a new server's RSS.
if want P5; then
  # idle_kb LABEL SOCKET PIDS... -> "KB-per-connection count", trying smaller counts when
  # the server does not hold IDLE_CONNS.
  idle_kb() {
    local label=$1 sock=$2 n before after log=$WORK/idle.out bpid
    shift 2
    for n in $IDLE_CONNS $((IDLE_CONNS / 2)) $((IDLE_CONNS / 5)) $((IDLE_CONNS / 10)); do
      [ "$n" -gt 0 ] || continue
      before=$(status_kb VmRSS "$@")
      "${BENCH[@]}" --socket "$sock" --idle -C "$n" -d 600 >"$log" 2>&1 &
      bpid=$!
      BG_PIDS="$BG_PIDS $bpid"
      for _ in $(seq 1 1200); do
        grep -q '^idle_connections=' "$log" 2>/dev/null && break
        kill -0 "$bpid" 2>/dev/null || break
        sleep 0.1
      done
      if grep -q '^idle_connections=' "$log"; then
        sleep 1
        after=$(status_kb VmRSS "$@")
        kill "$bpid" 2>/dev/null || true; wait "$bpid" 2>/dev/null || true
        echo "  $label: VmRSS $before kB -> $after kB with $n idle connections" >&2
        echo "$(calc "($after - $before) / $n") $n"
        sleep 1 # let the server close them
        return
      fi
      echo "  $label could not hold $n idle connections: $(tr '\n' ' ' <"$log")" >&2
      kill "$bpid" 2>/dev/null || true; wait "$bpid" 2>/dev/null || true
      sleep 2
    done
    echo "error 0"
  }
  for i in $(seq 1 "$RUNS"); do
    echo "P5 run $i of $RUNS" >&2
    start_dovecot "$DC_MAIN"
    read -r kb n <<<"$(idle_kb dovecot "$DC_SOCK" $(dc_cpu_pids))"; add "P5|dc" "$kb"; add "P5n|dc" "$n"
    stop_dovecot
    start_saslgate "$SG_MAIN"
    read -r kb n <<<"$(idle_kb saslgate "$SG_SOCK" "$SG_PID")"; add "P5|sg" "$kb"; add "P5n|sg" "$n"
    stop_saslgate
  done
fi

# ---------------------------------------------------------------- P6: a big passwd-file
if want P6; then
  echo "P6: generating $BIG_USERS users..." >&2
  gen_big "$BIG"
  cp "$BIG" "$BIG.copy"
  BIG_BYTES=$(stat -c %s "$BIG")
  BIG_KB=$((BIG_BYTES / 1024))
  echo "  $(stat -c %s "$BIG") bytes" >&2
  dovecot_conf "$DC_BIG" "$BIG"
  saslgate_conf "$SG_BIG" "$BIG"
  LAST_MTIME=$(stat -c %Y "$BIG")
  # Replaces the file by a copy with the same users and a new mtime (a whole second later at
  # least: Dovecot compares mtime in seconds, and size), as an admin's tool would: written
  # beside it, then renamed over it.
  replace_big() {
    local t
    t=$(date +%s); [ "$t" -gt "$LAST_MTIME" ] || t=$((LAST_MTIME + 1))
    LAST_MTIME=$t
    cp "$BIG.copy" "$BIG.new"
    touch -d "@$t" "$BIG.new"
    mv -f "$BIG.new" "$BIG"
  }
  # first_answer SOCKET -> seconds from T0 (ns) to the first OK for BIG_USER
  first_answer() {
    local sock=$1 t0=$2
    for _ in $(seq 1 3000); do
      if [ -S "$sock" ] && "$BIN" bench --socket "$sock" --user "$BIG_USER" --password "$PASS" -n 1 --warmup 0 --kv \
           >/dev/null 2>&1; then
        calc "($(date +%s%N) - $t0) / 1e9"
        return
      fi
      sleep 0.01
    done
    echo error
  }
  big_server() { # dc|sg: P6a..d for one fresh server
    local s=$1 t0 sock pids mem label out flood i
    rm -rf "$DC_BIG/run" "$SG_BIG/auth-client"
    t0=$(date +%s%N)
    if [ "$s" = dc ]; then
      label=dovecot
      dovecot -c "$DC_BIG/dovecot.conf"
      sock=$DC_BIG/run/auth-client
      DC_DIR=$DC_BIG
    else
      label=saslgate
      "$BIN" --config "$SG_BIG/saslgate.yaml" >>"$SG_BIG/saslgate.log" 2>&1 &
      SG_PID=$!
      sock=$SG_BIG/auth-client
    fi
    local first; first=$(first_answer "$sock" "$t0")
    if [ "$s" = dc ]; then
      DC_PID=$(cat "$DC_BIG/run/master.pid" 2>/dev/null || true)
      mem=$(dovecot_child auth || true)
    else
      mem=$SG_PID
    fi
    add "P6a|$s" "$first"
    if [ "$first" = error ] || [ -z "$mem" ]; then
      echo "  $label: no answer for $BIG_USER" >&2; FAILED=1
      add "P6b|$s" error; add "P6c|$s" error; add "P6d|$s" error
    else
      sleep 0.5
      local rss; rss=$(status_kb VmRSS "$mem")
      echo "  $label: first answer after $(fmt3 "$first") s; VmRSS $rss kB, file $BIG_KB kB" >&2
      add "P6b|$s" "$(calc "$rss / $BIG_KB")"
      echo 5 >"/proc/$mem/clear_refs" 2>/dev/null || NOTES+=("P6d: could not reset VmHWM ($label); it includes the first load.")
      # Reloads spread over the measured window (after the warmup).
      (
        for i in $(seq 1 "$RELOADS"); do
          sleep "$(calc "$WARMUP * (${i} == 1) + $BIG_DURATION / ($RELOADS + 1)")"
          replace_big
        done
      ) &
      flood=$!
      BG_PIDS="$BG_PIDS $flood"
      out=$(bench_run "$label (file replaced $RELOADS times)" "$sock" "$BIG_USER" 16 1 "$BIG_DURATION" "$mem")
      wait "$flood" 2>/dev/null || true
      local hwm; hwm=$(status_kb VmHWM "$mem")
      echo "  $label: VmHWM across the reloads $hwm kB" >&2
      if [ "$out" = error ]; then add "P6c|$s" error; else add "P6c|$s" "$(kv max_ms "$out")"; fi
      add "P6d|$s" "$(calc "$hwm / $BIG_KB")"
    fi
    if [ "$s" = dc ]; then stop_dovecot; else stop_saslgate; fi
  }
  for i in $(seq 1 "$RUNS"); do
    echo "P6 run $i of $RUNS" >&2
    big_server dc
    big_server sg
  done
  rm -f "$BIG" "$BIG.copy" "$BIG.new"
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
T_END=$(date +%s)

# ---------------------------------------------------------------- table
med() { printf '%s' "${R["$1"]:-}" | median; }
# row NAME MEASURE DC SG FORMAT GOAL-KIND GOAL-VALUE GOAL-TEXT
#   FORMAT: rate | ms | us | kb | s | x;  GOAL-KIND: ratio-min, ratio-max (saslgate/Dovecot),
#   abs-max (saslgate's own value)
row() {
  local name=$1 measure=$2 dc=$3 sg=$4 fmt=$5 kind=$6 goal=$7 text=$8 ratio met dcs sgs
  f() {
    case "$1" in error|"") echo "error"; return ;; esac
    case "$fmt" in
      rate) fmt_rate "$1" ;;
      ms) echo "$(fmt3 "$1") ms" ;;
      us) echo "$(fmt3 "$1") µs" ;;
      kb) echo "$(fmt3 "$1") KB" ;;
      s) echo "$(fmt3 "$1") s" ;;
      x) echo "$(fmt3 "$1")×" ;;
    esac
  }
  dcs=$(f "$dc"); sgs=$(f "$sg")
  ratio="—"; met="—"
  if [ "$dc" != error ] && [ "$sg" != error ] && [ -n "$dc" ] && [ -n "$sg" ] && [ "$(calc "($dc > 0)")" = 1 ]; then
    ratio="$(fmt3 "$(calc "$sg / $dc")")×"
  fi
  if [ "$sg" != error ] && [ -n "$sg" ]; then
    case "$kind" in
      ratio-min) [ "$ratio" != "—" ] && met=$( [ "$(calc "($sg / $dc >= $goal)")" = 1 ] && echo yes || echo no) ;;
      ratio-max) [ "$ratio" != "—" ] && met=$( [ "$(calc "($sg / $dc <= $goal)")" = 1 ] && echo yes || echo no) ;;
      abs-max) met=$( [ "$(calc "($sg <= $goal)")" = 1 ] && echo yes || echo no) ;;
    esac
  fi
  echo "| $name | $measure | $dcs | $sgs | $ratio | $text | $met |"
}

TABLE=$(
  echo "| row | measure | Dovecot | saslgate | ratio | goal | met? |"
  echo "|---|---|---:|---:|---:|---|---|"
  if want P1; then
    row P1 "\`{PLAIN}\` C=64 P=4: logins/s" "$(med 'P1rate|dc')" "$(med 'P1rate|sg')" rate ratio-min 1.5 "≥1.5×"
    row P1 "…daemon CPU per login" "$(med 'P1cpu|dc')" "$(med 'P1cpu|sg')" us ratio-max 0.3334 "≤⅓"
    if [ "$FLOOR" = 1 ]; then
      echo "| P1 floor | a trivial server answering every AUTH with OK (\`examples/floor_server.rs\`), C=64 P=4: $(fmt_rate "$(med 'P1rate|floor')") logins/s, $(fmt3 "$(med 'P1cpu|floor')") µs CPU per login | — | — | — | — | — |"
    fi
  fi
  if want P2; then
    row P2 "\`{PLAIN}\` C=16 P=1: p99 latency" "$(med 'P2|dc')" "$(med 'P2|sg')" ms ratio-max 0.5 "≤½"
  fi
  if want P3; then
    row P3 "SHA512-CRYPT C=16: logins/s" "$(med 'P3sha512|dc')" "$(med 'P3sha512|sg')" rate ratio-min 1.9 "≥1.9×"
    row P3 "BLF-CRYPT (cost 5) C=16: logins/s" "$(med 'P3blf|dc')" "$(med 'P3blf|sg')" rate ratio-min 1.9 "≥1.9×"
  fi
  if want P4; then
    row P4 "\`{PLAIN}\` p99 at C=1 while 16 clients flood BLF-CRYPT" "$(med 'P4|dc')" "$(med 'P4|sg')" ms abs-max 1 "≤1 ms"
  fi
  if want P5; then
    dcn=$(med 'P5n|dc'); sgn=$(med 'P5n|sg')
    m="memory per idle client connection, $(fmt_rate "$IDLE_CONNS") held"
    if [ "$dcn" != error ] && [ "$dcn" != "$IDLE_CONNS" ]; then m="$m (Dovecot: $(fmt_rate "$dcn"), the most it held)"; fi
    if [ "$sgn" != error ] && [ "$sgn" != "$IDLE_CONNS" ]; then m="$m (saslgate: $(fmt_rate "$sgn"), the most it held)"; fi
    row P5 "$m" "$(med 'P5|dc')" "$(med 'P5|sg')" kb abs-max 6 "≤6 KB"
  fi
  if want P6; then
    n=$(fmt_rate "$BIG_USERS")
    row P6a "passwd-file of $n users ($(calc "int($BIG_BYTES / 1e6 + 0.5)") MB): start → first answer" "$(med 'P6a|dc')" "$(med 'P6a|sg')" s abs-max 1 "≤1 s"
    row P6b "…resident memory after load ÷ file size" "$(med 'P6b|dc')" "$(med 'P6b|sg')" x abs-max 2 "≤2×"
    row P6c "…slowest reply at C=16 while the file is replaced $RELOADS times" "$(med 'P6c|dc')" "$(med 'P6c|sg')" ms abs-max 25 "≤25 ms"
    row P6d "…peak memory (VmHWM) across the reloads ÷ file size" "$(med 'P6d|dc')" "$(med 'P6d|sg')" x abs-max 4 "≤4×"
  fi
)

SG_VERSION=$("$BIN" --version 2>/dev/null | head -n1 || echo saslgate)
SG_COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
NOTE="Measured $(date -u +%Y-%m-%d) on $(nproc) cores (load average $LOAD_BEFORE before, $LOAD_AFTER after; $((T_END - T_START)) s) \
with \`scripts/bench-vs-dovecot.sh --runs $RUNS\`: Dovecot $(dovecot --version | cut -d' ' -f1) auth (auth_cache_size = 0, \
auth_failure_delay = 0, no verbose/debug logging) vs. $SG_VERSION ($SG_COMMIT) on its default settings \
($( [ -n "$SG_LOG_LEVEL" ] && echo "log level \`$SG_LOG_LEVEL\`" || echo "default log level" ), failure_delay 0s, \
limits.max_connections $((IDLE_CONNS + 1000))), the same passwd-file, load from \`saslgate bench\` ($BENCH_THREADS thread(s); PLAIN with \
\`resp=\`, every login succeeds) on the same 2 cores; $DURATION s per run after $WARMUP s of warmup, median of $RUNS run(s), the two \
servers alternating. Ratio is saslgate ÷ Dovecot. CPU per login: the server's user+system time from /proc over the whole run ÷ every reply \
(Dovecot: master, auth and anvil)."
want P1 && NOTE="$NOTE The load generator's own CPU per login at P1: $(fmt3 "$(med 'P1client|sg')") µs (saslgate run)."
want P4 && NOTE="$NOTE P4: a second \`saslgate bench\` keeps 16 BLF-CRYPT logins in flight while the measured client runs."
want P5 && NOTE="$NOTE P5: VmRSS of a freshly started server with the connections open minus before, ÷ the count (Dovecot: master, auth and anvil; the connections are made as root, so saslgate's per-uid cap does not apply)."
want P6 && NOTE="$NOTE P6: \`userN:{PLAIN}…:uid:gid::/home/userN::\` lines; a fresh server per run, timed from its start command to the \
first OK for \`$BIG_USER\` (Dovecot reads passwd-files at the first lookup); memory is the auth process's (saslgate's) VmRSS, and \
VmHWM reset before the reload run; the file is replaced by a copy (written beside it and renamed over it, a new mtime) \
$RELOADS times during a $BIG_DURATION s C=16 run."
for n in "${NOTES[@]}"; do NOTE="$NOTE $n"; done
[ "$FAILED" = 1 ] && NOTE="$NOTE Some runs failed (\"error\" cells); see the script's output."

echo
echo "$TABLE"
echo
echo "$NOTE"
echo "total runtime $((T_END - T_START)) s" >&2

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
