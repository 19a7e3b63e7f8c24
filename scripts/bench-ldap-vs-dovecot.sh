#!/usr/bin/env bash
# LDAP load test: saslgate's ldap passdb vs. Dovecot 2.3's dovecot-ldap driver, on the same slapd
# in the same run.
#
# One slapd (Debian slapd, own config and mdb under a temp dir, 127.0.0.1) holds a user `bench`
# ({SSHA} password) and a service account. Both servers are auth-only, without cache
# (auth_cache_size = 0 / no `auth.cache`), failure delay 0, and are loaded by the same client,
# `saslgate bench -C 16` (PLAIN with resp=, one request in flight per connection, only successful
# logins). Scenarios:
#   auth_bind  pass_filter search as the service account, then a bind as the user's DN
#   lookup     pass_filter search reading userPassword, {SSHA} verified by the auth server
# each (a) on loopback, straight to slapd, and (b) through scripts/delayproxy.py, which adds
# DELAY_MS (2) of round trip between the auth server and slapd (the kernel has no netem).
# Runs alternate between the two servers (dovecot, saslgate, dovecot, ...) so both see the same
# background load; the run with the median rate of RUNS is reported.
#
# usage: scripts/bench-ldap-vs-dovecot.sh [--write-readme] [--runs N] [--keep]
#   --write-readme  put the table between <!-- bench-ldap:start --> and <!-- bench-ldap:end -->
#                   in README.md (appending them to the Benchmarks section if missing)
#   --runs N        runs per scenario and server (default 3)
#   --keep          keep the temp dir (configs, logs)
#
# Environment knobs: RUNS=3  DURATION=5  WARMUP=1  CLIENTS=16  DELAY_MS=2  NO_BUILD=1
#   SG_LOG_LEVEL=warn  SASLGATE_BIN=target/release/saslgate  SCENARIOS="auth_bind:0 lookup:0 auth_bind:2 lookup:2" (mode:delay_ms)
#
# Needs root (Dovecot's master), dovecot-core, dovecot-ldap, slapd, ldap-utils, python3.
# Total runtime with the defaults: about 3 minutes plus the release build.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CLIENTS=${CLIENTS:-16}
DELAY_MS=${DELAY_MS:-2}
SG_LOG_LEVEL=${SG_LOG_LEVEL:-warn}
PASS=benchpw
WRITE_README=0
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --write-readme) WRITE_README=1 ;;
    --runs) RUNS=${2:?--runs needs a number}; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$RUNS" in ''|*[!0-9]*|0) echo "--runs must be a positive number" >&2; exit 2 ;; esac
SCENARIOS=${SCENARIOS:-"auth_bind:0 lookup:0 auth_bind:$DELAY_MS lookup:$DELAY_MS"}

# ---------------------------------------------------------------- preconditions
export PATH="$PATH:/usr/sbin:/sbin"
need() { command -v "$1" >/dev/null 2>&1 || { echo "bench-ldap: '$1' not found; $2 (scripts/install-deps.sh)" >&2; exit 2; }; }
need dovecot "install dovecot-core"
need doveconf "install dovecot-core"
need slapd "install slapd"
need slapadd "install slapd"
need slappasswd "install slapd"
need python3 "install python3"
[ -e /usr/lib/dovecot/modules/auth/libauthdb_ldap.so ] || { echo "bench-ldap: install dovecot-ldap" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench-ldap: must run as root (Dovecot's master requires it)" >&2; exit 2; }

# ---------------------------------------------------------------- temp dir and cleanup
WORK=$(mktemp -d /tmp/saslgate-bench-ldap.XXXXXX)
chmod 0755 "$WORK"
BASE="dc=example,dc=org"
SLAPD_DIR=$WORK/slapd
DC_DIR=$WORK/dovecot
SG_DIR=$WORK/saslgate
mkdir -p "$SLAPD_DIR/db" "$DC_DIR/run" "$DC_DIR/state" "$SG_DIR"
DC_PIDFILE=$DC_DIR/run/master.pid
DC_SOCK=$DC_DIR/run/auth-client
SG_SOCK=$SG_DIR/auth-client
SLAPD_PID= PROXY_PID= SG_PID= DC_PID=

stop_pid() { # PID: TERM, wait up to 5 s, KILL
  local p=$1
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
stop_servers() { stop_pid "$SG_PID"; SG_PID=; stop_pid "$DC_PID"; DC_PID=; rm -f "$DC_SOCK" "$SG_SOCK"; }
cleanup() {
  stop_servers
  stop_pid "$PROXY_PID"
  stop_pid "$SLAPD_PID"
  if [ "$KEEP" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # PORT: until something listens (10 s)
  for _ in $(seq 1 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- build
if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "building saslgate (release)..." >&2
  (cd "$ROOT" && cargo build --release --quiet)
fi
BIN=${SASLGATE_BIN:-$ROOT/target/release/saslgate}
[ -x "$BIN" ] || { echo "bench-ldap: $BIN is missing" >&2; exit 1; }

# ---------------------------------------------------------------- slapd
SLAPD_PORT=$(free_port)
cat >"$SLAPD_DIR/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $SLAPD_DIR/slapd.pid
argsfile $SLAPD_DIR/slapd.args
loglevel none
database mdb
suffix "$BASE"
rootdn "cn=admin,$BASE"
rootpw $(slappasswd -h '{SSHA}' -s adminpw)
directory $SLAPD_DIR/db
maxsize 104857600
index objectClass,uid eq
access to attrs=userPassword
  by dn.exact="cn=saslgate,$BASE" read
  by anonymous auth
  by * none
access to *
  by dn.exact="cn=saslgate,$BASE" read
  by users read
  by anonymous auth
EOF
{
  printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n' "$BASE"
  printf 'dn: cn=saslgate,%s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: saslgate\nuserPassword: %s\n\n' \
    "$BASE" "$(slappasswd -h '{SSHA}' -s servicepw)"
  printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$BASE"
  uid=5000
  for u in bench $(seq -f "filler%g" 1 50); do
    printf 'dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: %s\ncn: %s\nsn: %s\n' "$u" "$BASE" "$u" "$u" "$u"
    printf 'userPassword: %s\nuidNumber: %s\ngidNumber: 5000\nhomeDirectory: /home/%s\n\n' "$(slappasswd -h '{SSHA}' -s "$PASS")" "$uid" "$u"
    uid=$((uid + 1))
  done
} >"$SLAPD_DIR/init.ldif"
slapadd -q -f "$SLAPD_DIR/slapd.conf" -l "$SLAPD_DIR/init.ldif"
slapd -d 0 -f "$SLAPD_DIR/slapd.conf" -h "ldap://127.0.0.1:$SLAPD_PORT/" </dev/null >/dev/null 2>"$SLAPD_DIR/slapd.log" &
SLAPD_PID=$!
wait_port "$SLAPD_PORT" || { echo "slapd did not listen:" >&2; cat "$SLAPD_DIR/slapd.log" >&2; exit 1; }

# ---------------------------------------------------------------- delay proxy
PROXY_PORT=$(free_port)
python3 "$ROOT/scripts/delayproxy.py" "$PROXY_PORT" "$SLAPD_PORT" "$DELAY_MS" >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
wait_port "$PROXY_PORT" || { echo "delayproxy did not listen:" >&2; cat "$WORK/proxy.log" >&2; exit 1; }

# ---------------------------------------------------------------- servers for one scenario
# write_configs MODE URI
write_configs() {
  local mode=$1 uri=$2 bind=no attrs="uid=user" sg_bind=false sg_attrs="{ uid: user }"
  if [ "$mode" = auth_bind ]; then
    bind=yes; sg_bind=true
  else
    attrs="uid=user,userPassword=password"; sg_attrs="{ uid: user, userPassword: password }"
  fi
  cat >"$DC_DIR/ldap.conf.ext" <<EOF
uris = $uri
dn = cn=saslgate,$BASE
dnpass = servicepw
base = ou=people,$BASE
scope = subtree
deref = never
auth_bind = $bind
pass_filter = (&(objectClass=posixAccount)(uid=%u))
pass_attrs = $attrs
default_pass_scheme = SSHA
EOF
  chmod 0644 "$DC_DIR/ldap.conf.ext"
  cat >"$DC_DIR/dovecot.conf" <<EOF
# generated by saslgate's scripts/bench-ldap-vs-dovecot.sh: an auth-only Dovecot
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
passdb {
  driver = ldap
  args = $DC_DIR/ldap.conf.ext
}
userdb {
  driver = static
  args = uid=5000 gid=5000 home=/tmp/%u
}
service auth {
  client_limit = 5000
  unix_listener auth-client {
    mode = 0666
  }
}
service anvil {
  client_limit = 5000
}
EOF
  cat >"$SG_DIR/saslgate.yaml" <<EOF
# generated by scripts/bench-ldap-vs-dovecot.sh
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
  - driver: ldap
    uris: [ "$uri" ]
    dn: cn=saslgate,$BASE
    dnpass: servicepw
    base: ou=people,$BASE
    scope: subtree
    deref: never
    auth_bind: $sg_bind
    pass_filter: "(&(objectClass=posixAccount)(uid=%u))"
    pass_attrs: $sg_attrs
    scheme: SSHA
EOF
}

start_servers() {
  doveconf -c "$DC_DIR/dovecot.conf" -n >/dev/null
  dovecot -c "$DC_DIR/dovecot.conf"
  "$BIN" --config "$SG_DIR/saslgate.yaml" check >/dev/null
  "$BIN" --config "$SG_DIR/saslgate.yaml" >>"$SG_DIR/saslgate.log" 2>&1 &
  SG_PID=$!
  for _ in $(seq 1 100); do
    [ -S "$DC_SOCK" ] && [ -s "$DC_PIDFILE" ] && [ -S "$SG_SOCK" ] && break
    sleep 0.1
  done
  [ -S "$DC_SOCK" ] && [ -s "$DC_PIDFILE" ] || { echo "dovecot did not come up:" >&2; tail -n 30 "$DC_DIR/dovecot.log" >&2; exit 1; }
  [ -S "$SG_SOCK" ] || { echo "saslgate did not come up:" >&2; tail -n 30 "$SG_DIR/saslgate.log" >&2; exit 1; }
  DC_PID=$(cat "$DC_PIDFILE")
}

# ---------------------------------------------------------------- measuring
kv() { local f; for f in $2; do case "$f" in "$1="*) echo "${f#*=}"; return 0 ;; esac; done; echo "-"; }
fmt_rate() { LC_ALL=C printf "%.0f" "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
fmt_ms() { LC_ALL=C awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v; else if (v >= 1) printf "%.2f", v; else printf "%.3f", v }'; }

FAILED=0
# bench_once SERVER SOCKET LABEL -> "rate p50 p99" or "error"
bench_once() {
  local server=$1 sock=$2 label=$3 out rc=0
  out=$("$BIN" bench --socket "$sock" --user bench --password "$PASS" -C "$CLIENTS" -p 1 \
        -d "$DURATION" --warmup "$WARMUP" --kv 2>"$WORK/bench.err") || rc=$?
  if [ $rc -ne 0 ]; then
    echo "  $label $server failed (exit $rc): $(tr '\n' ' ' <"$WORK/bench.err")$out" >&2
    FAILED=1; echo error; return
  fi
  echo "  $label $server: $(kv rate "$out") logins/s, p50 $(kv p50_ms "$out") ms, p99 $(kv p99_ms "$out") ms (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  echo "$(kv rate "$out") $(kv p50_ms "$out") $(kv p99_ms "$out")"
}
median_run() {
  local lines n
  lines=$(grep -v '^error$' || true)
  [ -n "$lines" ] || { echo error; return; }
  n=$(echo "$lines" | wc -l)
  echo "$lines" | sort -g -k1,1 | sed -n "$(( (n + 1) / 2 ))p"
}

declare -A RESULT
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "Dovecot $(dovecot --version | cut -d' ' -f1) vs saslgate on slapd $(slapd -VV 2>&1 | grep -o 'slapd [0-9.]*' | head -1); load average $LOAD_BEFORE" >&2
for sc in $SCENARIOS; do
  mode=${sc%%:*} delay=${sc#*:}
  if [ "$delay" = 0 ]; then uri="ldap://127.0.0.1:$SLAPD_PORT"; else
    [ "$delay" = "$DELAY_MS" ] || { echo "scenario $sc: the proxy adds DELAY_MS=$DELAY_MS" >&2; exit 2; }
    uri="ldap://127.0.0.1:$PROXY_PORT"
  fi
  write_configs "$mode" "$uri"
  start_servers
  dc=() sg=()
  for i in $(seq 1 "$RUNS"); do
    dc+=("$(bench_once dovecot "$DC_SOCK" "$sc")")
    sg+=("$(bench_once saslgate "$SG_SOCK" "$sc")")
  done
  RESULT["dovecot|$sc"]=$(printf '%s\n' "${dc[@]}" | median_run)
  RESULT["saslgate|$sc"]=$(printf '%s\n' "${sg[@]}" | median_run)
  stop_servers
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- table
TABLE=$(
  echo "| scenario | Dovecot logins/s | saslgate logins/s | ratio | p99 ms, Dovecot / saslgate |"
  echo "|---|---:|---:|---:|---:|"
  for sc in $SCENARIOS; do
    mode=${sc%%:*} delay=${sc#*:}
    if [ "$delay" = 0 ]; then where="loopback"; else where="+${delay} ms round trip"; fi
    d=${RESULT["dovecot|$sc"]} g=${RESULT["saslgate|$sc"]}
    if [ "$d" = error ] || [ "$g" = error ]; then
      echo "| \`$mode\`, $where | $d | $g | — | — |"; continue
    fi
    read -r dr _ dp99 <<<"$d"; read -r gr _ gp99 <<<"$g"
    ratio=$(LC_ALL=C awk -v a="$gr" -v b="$dr" 'BEGIN { printf "%.1f×", (b > 0 ? a / b : 0) }')
    echo "| \`$mode\`, $where | $(fmt_rate "$dr") | $(fmt_rate "$gr") | $ratio | $(fmt_ms "$dp99") / $(fmt_ms "$gp99") |"
  done
)
NOTE="Measured $(date -u +%Y-%m-%d) on $(nproc) cores shared with slapd, the load generator and other work \
(load average $LOAD_BEFORE before, $LOAD_AFTER after) with \`scripts/bench-ldap-vs-dovecot.sh\`: \
Dovecot $(dovecot --version | cut -d' ' -f1) with \`dovecot-ldap\` vs. saslgate (defaults: 4 lookup connections, \
16 bind connections), the same slapd in the same run, no auth cache on either side, \
\`saslgate bench -C $CLIENTS\` (PLAIN, every login succeeds), $DURATION s per run after $WARMUP s warmup, \
median of $RUNS runs, the two servers alternating. \`auth_bind\`: DN search as the service account, then a bind \
as the user; \`lookup\`: search reading \`{SSHA}\` userPassword. The added round trip comes from \
\`scripts/delayproxy.py\` between the auth server and slapd."
echo
echo "$TABLE"
echo
echo "$NOTE"

if [ "$WRITE_README" = 1 ]; then
  README=$ROOT/README.md
  BLOCK="<!-- bench-ldap:start -->
$TABLE

$NOTE
<!-- bench-ldap:end -->"
  if grep -q '<!-- bench-ldap:start -->' "$README" && grep -q '<!-- bench-ldap:end -->' "$README"; then
    BLOCK="$BLOCK" awk '
      /<!-- bench-ldap:start -->/ { print ENVIRON["BLOCK"]; skip = 1; next }
      /<!-- bench-ldap:end -->/ { skip = 0; next }
      !skip { print }
    ' "$README" >"$README.tmp" && mv "$README.tmp" "$README"
    echo "updated the LDAP table in $README" >&2
  else
    printf '\n### LDAP: saslgate vs. Dovecot 2.3 dovecot-ldap\n\n%s\n' "$BLOCK" >>"$README"
    echo "appended the LDAP table to $README" >&2
  fi
fi
exit $FAILED
