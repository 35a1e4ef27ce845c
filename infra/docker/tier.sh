#!/usr/bin/env bash
# `make up PROFILE=k8s-docker` / `make down PROFILE=k8s-docker`: the `k8s` tier on a Docker engine.
#   up:   dockerd (engine.sh), the image (image.sh when missing), the stores prepared
#         (`python -m dagster_project init`: databases, bucket, dagster.yaml with DockerRunLauncher),
#         then in containers of the image: the code server (gRPC), the serving endpoint and the
#         stream consumer; on the host: Dagster's webserver and daemon (runs launch in containers,
#         each step in its own container). PostgreSQL and Redis are the machine's; S3 is the
#         loopback server make starts (or MLOPS_S3_ENDPOINT_URL).
#   down: removes every container labelled flight-mlops/tier=k8s-docker (the run launcher labels
#         run and step containers so too) and stops the host processes.
# Needs RUN_DIR, PY (the venv's python), BIN (the venv's bin), IMAGE, DAGSTER_HOME, MLOPS_HOME.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${RUN_DIR:?}" "${PY:?}" "${BIN:?}" "${DAGSTER_HOME:?}"
IMAGE=${IMAGE:-flight-mlops:0.1.0}
LABEL=flight-mlops/tier=k8s-docker
CODE_PORT=${CODE_PORT:-3030}
DAGSTER_PORT=${DAGSTER_PORT:-3000}
SERVICES="env RUN_DIR=$RUN_DIR PY=$PY bash infra/local/services.sh"
WORKSPACE=$RUN_DIR/workspace-k8s-docker.yaml

container_env() {  # -e NAME for each setting the containers inherit (settings.container_env)
  "$PY" -c 'from dagster_project.platform import settings; print(" ".join("-e " + k for k in settings.container_env()))'
}

run_container() {  # NAME CMD...: a detached container of IMAGE on the host network
  local name=$1; shift
  if docker container inspect "$name" >/dev/null 2>&1; then
    echo "  $name: already running"; return 0
  fi
  # shellcheck disable=SC2046
  docker run -d --name "$name" --label "$LABEL" --network host --restart unless-stopped \
    $(container_env) -e DAGSTER_CURRENT_IMAGE="$IMAGE" "$IMAGE" "$@" >/dev/null
  echo "  $name: container $(docker container inspect -f '{{.Id}}' "$name" | cut -c1-12)"
}

case "${1:-}" in
up)
  bash infra/docker/engine.sh
  docker image inspect "$IMAGE" >/dev/null 2>&1 || PY=$PY bash infra/docker/image.sh
  mkdir -p "$RUN_DIR" "$DAGSTER_HOME"
  "$PY" -m dagster_project init
  cat >"$WORKSPACE" <<YAML
load_from:
  - grpc_server: {host: 127.0.0.1, port: $CODE_PORT, location_name: flight_mlops}
YAML
  run_container mlops-code dagster api grpc -m dagster_project.definitions -h 127.0.0.1 -p "$CODE_PORT"
  run_container mlops-serving python -m dagster_project.serving --host 127.0.0.1 --port "${MLOPS_SERVING_PORT:-8000}"
  run_container mlops-consumer python -m dagster_project consume
  # the code server answers gRPC, not HTTP: wait until `dagster api grpc-health-check` passes
  for _ in $(seq 1 120); do
    "$BIN/dagster" api grpc-health-check -p "$CODE_PORT" >/dev/null 2>&1 && break
    sleep 1
  done
  $SERVICES start dagster "http://127.0.0.1:$DAGSTER_PORT" \
    "$BIN/dagster-webserver" -w "$WORKSPACE" -h 127.0.0.1 -p "$DAGSTER_PORT"
  $SERVICES start dagster-daemon - "$BIN/dagster-daemon" run -w "$WORKSPACE"
  $SERVICES wait dagster || true
  echo "Dagster UI http://127.0.0.1:$DAGSTER_PORT (runs launch in containers of $IMAGE, a container per step)"
  echo "serving http://127.0.0.1:${MLOPS_SERVING_PORT:-8000} (container mlops-serving) | stop all: make down PROFILE=k8s-docker"
  ;;
down)
  $SERVICES stop dagster-daemon dagster
  ids=$(docker ps -aq --filter "label=$LABEL")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null && echo "  removed $(echo "$ids" | wc -w) containers"
  true
  ;;
*) echo "usage: tier.sh up|down" >&2; exit 2 ;;
esac
