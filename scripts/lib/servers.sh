# The one way scripts start and stop servers: in the background on port 0, their address read
# from their log, stopped by PID (SIGTERM, and the exit status must be 0); fresh PostgreSQL
# schemas, dropped on exit. Source it after `set -euo pipefail`, from the repository root.
# It defines:
#   $work        a temp dir, removed on exit; $LOG_DIR (default $work) holds the servers' logs
#   $target_dir  where cargo puts binaries ($CARGO_TARGET_DIR, else target)
#   start NAME CMD...   runs CMD, log in $LOG_DIR/NAME.log; sets $pid and $addr (waits up to
#                       $START_WAIT seconds, 60 by default, for the address)
#   stop PID NAME       SIGTERM, waits, fails (with the log's tail) unless it exited 0
#   new_schema [PREFIX] a fresh schema in the test database; sets $schema, $db_url and $pg_base
#   json_field FILE EXPR   a value out of a JSON report (scripts/lib/report.py field)

# Servers on PostgreSQL need the deployment's key-encryption key; the scripts' servers share this
# test value (override it from the environment).
export AUTHPLANE_KEY_ENCRYPTION_KEY=${AUTHPLANE_KEY_ENCRYPTION_KEY:-dGVzdC1rZXktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=}

work=$(mktemp -d)
LOG_DIR=${LOG_DIR:-$work}
target_dir=${CARGO_TARGET_DIR:-target}
pids=()
schemas=()
pg_base=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for s in "${schemas[@]}"; do psql "$pg_base" -qc "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start() {
  local name=$1
  shift
  NO_COLOR=1 RUST_LOG=${RUST_LOG:-info} "$@" >"$LOG_DIR/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  addr=""
  for _ in $(seq 1 $((${START_WAIT:-60} * 10))); do
    addr=$(sed -n 's/.*listening addr=\([0-9.:]*\).*/\1/p' "$LOG_DIR/$name.log" | head -n 1)
    [ -n "$addr" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited before listening:" >&2
      cat "$LOG_DIR/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name did not report its address in ${START_WAIT:-60} s" >&2
  cat "$LOG_DIR/$name.log" >&2
  exit 1
}

stop() {
  local p=$1 name=$2 status=0
  kill -TERM "$p"
  wait "$p" || status=$?
  local rest=()
  for q in "${pids[@]}"; do [ "$q" = "$p" ] || rest+=("$q"); done
  pids=("${rest[@]}")
  if [ "$status" -ne 0 ]; then
    echo "$name exited with status $status after SIGTERM" >&2
    tail -n 20 "$LOG_DIR/$name.log" >&2
    exit 1
  fi
}

# Not a command substitution (its subshell would lose $schemas): sets the variables instead.
new_schema() {
  [ -n "$pg_base" ] || pg_base=$(./scripts/ensure-postgres)
  schema="${1:-bench}_$(date +%s)_$$_${#schemas[@]}"
  psql "$pg_base" -qc "CREATE SCHEMA $schema" >/dev/null
  schemas+=("$schema")
  local sep='?'
  case "$pg_base" in *\?*) sep='&' ;; esac
  db_url="${pg_base}${sep}options=-c%20search_path%3D${schema}"
}

json_field() {
  python3 scripts/lib/report.py field "$1" "$2"
}
