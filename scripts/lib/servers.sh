# Shared by the measurement and fault scripts: start servers in the background on port 0, find
# their address in their log, stop them by PID, and make a fresh PostgreSQL schema.
# Source it after `set -euo pipefail`; it defines $work (a temp dir removed on exit).

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${schema:-}" ]; then psql "$pg_base" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# start NAME CMD...: runs CMD with its log in $work/NAME.log; sets $pid and $addr.
start() {
  local name=$1
  shift
  NO_COLOR=1 RUST_LOG=${RUST_LOG:-info} "$@" >"$work/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  addr=""
  for _ in $(seq 1 600); do
    addr=$(sed -n 's/.*listening addr=\([0-9.:]*\).*/\1/p' "$work/$name.log" | head -n 1)
    [ -n "$addr" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited before listening:" >&2
      cat "$work/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name did not report its address in 60 s" >&2
  exit 1
}

# stop PID NAME: SIGTERM, and the exit status must be 0.
stop() {
  local p=$1 name=$2 status=0
  kill -TERM "$p"
  wait "$p" || status=$?
  local rest=()
  for q in "${pids[@]}"; do [ "$q" = "$p" ] || rest+=("$q"); done
  pids=("${rest[@]}")
  if [ "$status" -ne 0 ]; then
    echo "$name exited with status $status after SIGTERM" >&2
    tail -n 20 "$work/$name.log" >&2
    exit 1
  fi
}

# new_schema: a fresh schema in the test database; sets $schema and $db_url (search_path on it).
new_schema() {
  pg_base=$(./scripts/ensure-postgres)
  schema="bench_$(date +%s)_$$"
  psql "$pg_base" -qc "CREATE SCHEMA $schema" >/dev/null
  local sep='?'
  case "$pg_base" in *\?*) sep='&' ;; esac
  db_url="${pg_base}${sep}options=-c%20search_path%3D${schema}"
}

# json_field FILE EXPR: a value out of a JSON file (python3, no jq needed).
json_field() {
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$1" "$2"
}
