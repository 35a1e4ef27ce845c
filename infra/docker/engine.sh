#!/usr/bin/env bash
# The container engine for the container tier: Debian's docker.io (containerd, runc) and
# mmdebstrap (the air-gapped base image), installed when missing; dockerd started when it does
# not answer. Idempotent; the test setup and .ci/run call it.
#
#   bash infra/docker/engine.sh          # install if needed, start if needed, print the version
#   bash infra/docker/engine.sh stop     # stop the dockerd this script started
#
# Exit 0 when `docker info` answers, 1 (with the reason on stderr) when it cannot.
set -uo pipefail
RUN_DIR=${DOCKERD_RUN_DIR:-/var/run/mlops-dockerd}
LOG=${DOCKERD_LOG:-/var/log/mlops-dockerd.log}
say() { echo "engine.sh: $*" >&2; }

if [ "${1:-}" = stop ]; then
  if [ -s "$RUN_DIR/dockerd.pid" ] && kill -0 "$(cat "$RUN_DIR/dockerd.pid")" 2>/dev/null; then
    kill "$(cat "$RUN_DIR/dockerd.pid")"; rm -f "$RUN_DIR/dockerd.pid"
  fi
  exit 0
fi

if [ "$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else SUDO=none; fi

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io containerd runc)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
  if [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1 && [ "$SUDO" != none ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
      || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } \
      || { say "apt-get install ${missing[*]} failed"; exit 1; }
  else
    say "missing ${missing[*]} and no root/apt-get to install them (Debian: apt-get install docker.io mmdebstrap)"
    exit 1
  fi
fi

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }
if docker_ok; then docker version --format 'docker {{.Server.Version}} (running)'; exit 0; fi
if [ "$SUDO" = none ]; then say "dockerd is not running and this user cannot start it"; exit 1; fi

$SUDO mkdir -p "$RUN_DIR"
if ! pgrep -x containerd >/dev/null 2>&1; then
  # dockerd starts its own containerd when none answers on the default socket
  :
fi
say "starting dockerd (log: $LOG)"
$SUDO bash -c "nohup dockerd --pidfile '$RUN_DIR/dockerd.pid' >>'$LOG' 2>&1 &"
for _ in $(seq 1 60); do
  docker_ok && { docker version --format 'docker {{.Server.Version}} (started)'; exit 0; }
  sleep 0.5
done
say "dockerd did not answer within 30 s; last lines of $LOG:"
tail -n 20 "$LOG" >&2
exit 1
