#!/usr/bin/env bash
# Background services of the local tier, one process group each (what `make up` / `make down` use).
#
#   services.sh start NAME URL CMD...   start CMD in the background unless NAME is running;
#                                       log in $RUN_DIR/NAME.log, pid in $RUN_DIR/NAME.pid
#   services.sh wait NAME...            wait until each NAME answers HTTP at its URL (or died);
#                                       print the URL, or where its log is
#   services.sh stop NAME...            stop each NAME's process group (INT, TERM, then KILL)
#   services.sh status NAME...
#
# Needs RUN_DIR; PY (a python for the HTTP checks, default python3); UP_TIMEOUT (s, default 240).
set -uo pipefail

: "${RUN_DIR:?RUN_DIR is not set}"
PY=${PY:-python3}
UP_TIMEOUT=${UP_TIMEOUT:-240}
mkdir -p "$RUN_DIR"

pid_of() { cat "$RUN_DIR/$1.pid" 2>/dev/null; }
alive() { local pid; pid=$(pid_of "$1") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

answers_http() {  # any HTTP answer counts: the server is up, whatever the route says
  "$PY" - "$1" <<'EOF'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=3)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
EOF
}

start() {
  local name=$1 url=$2
  shift 2
  if alive "$name"; then
    echo "  $name: already running (pid $(pid_of "$name"))"
    return 0
  fi
  echo "$url" >"$RUN_DIR/$name.url"
  # set -m: the service becomes the leader of its own process group, so `stop` ends its children.
  (
    set -m
    nohup "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
  )
  echo "  $name: started (pid $(pid_of "$name")), log $RUN_DIR/$name.log"
}

wait_up() {
  local deadline=$((SECONDS + UP_TIMEOUT)) failed=0 name url
  for name in "$@"; do
    url=$(cat "$RUN_DIR/$name.url" 2>/dev/null || true)
    while true; do
      if ! alive "$name"; then
        echo "  $name: FAILED to start; see $RUN_DIR/$name.log"
        tail -n 5 "$RUN_DIR/$name.log" 2>/dev/null | sed 's/^/      /'
        failed=1
        break
      fi
      if answers_http "$url"; then
        printf '  %-8s %s\n' "$name" "$url"
        break
      fi
      if [ $SECONDS -ge $deadline ]; then
        echo "  $name: not answering at $url after ${UP_TIMEOUT}s (still starting?); see $RUN_DIR/$name.log"
        failed=1
        break
      fi
      sleep 1
    done
  done
  return $failed
}

stop() {
  local name pid i
  for name in "$@"; do
    if ! alive "$name"; then
      echo "  $name: not running"
      rm -f "$RUN_DIR/$name.pid"
      continue
    fi
    pid=$(pid_of "$name")
    kill -INT "$pid" 2>/dev/null # lets `dagster dev` and `airflow standalone` stop their children
    for i in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -TERM -- "-$pid" 2>/dev/null # the rest of its process group
    for i in $(seq 1 10); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null
    rm -f "$RUN_DIR/$name.pid"
    echo "  $name: stopped"
  done
}

status() {
  local name
  for name in "$@"; do
    if alive "$name"; then
      echo "  $name: running (pid $(pid_of "$name")) $(cat "$RUN_DIR/$name.url" 2>/dev/null)"
    else
      echo "  $name: stopped"
    fi
  done
}

command=${1:-}
shift || true
case "$command" in
start) start "$@" ;;
wait) wait_up "$@" ;;
stop) stop "$@" ;;
status) status "$@" ;;
*)
  echo "usage: $0 start NAME URL CMD... | wait NAME... | stop NAME... | status NAME..." >&2
  exit 2
  ;;
esac
