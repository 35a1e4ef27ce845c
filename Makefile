# Flight-delay MLOps platform. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MLOPS_HOME ?= $(CURDIR)/.mlops
export DAGSTER_HOME ?= $(MLOPS_HOME)/dagster_home
# The tier: `make up PROFILE=server` (or MLOPS_PROFILE=server in the environment).
# PROFILE=k8s-docker: the k8s tier on a Docker engine (MLOPS_EXECUTOR=docker, docs/tiers.md).
PROFILE ?= $(or $(MLOPS_PROFILE),local)
ifeq ($(PROFILE),k8s-docker)
export MLOPS_PROFILE := k8s
export MLOPS_EXECUTOR := docker
export MLOPS_SERVING_URL ?= http://127.0.0.1:$(or $(MLOPS_SERVING_PORT),8000)
# `make demo` launches its runs on the tier's Dagster (each step in its own container)
export MLOPS_DAGSTER_URL ?= http://127.0.0.1:$(or $(DAGSTER_PORT),3000)
STORES_PROFILE := server
else
export MLOPS_PROFILE := $(PROFILE)
STORES_PROFILE := $(PROFILE)
endif
# Server tier without an S3 endpoint of your own: `make up` starts an in-memory S3-compatible
# server (moto) on S3_PORT; its throwaway credentials are moto's, not secrets.
S3_PORT ?= 9000
ifeq ($(STORES_PROFILE),server)
ifeq ($(origin MLOPS_S3_ENDPOINT_URL),undefined)
LOCAL_S3 := 1
export MLOPS_S3_ENDPOINT_URL := http://127.0.0.1:$(S3_PORT)
export AWS_ACCESS_KEY_ID ?= testing
export AWS_SECRET_ACCESS_KEY ?= testing
export AWS_DEFAULT_REGION ?= us-east-1
endif
# The endpoint requires a bearer token off `local`: without MLOPS_SERVING_TOKEN (or
# MLOPS_SERVING_AUTH=off) a random one is kept in .mlops/run/serving.token (mode 600).
ifeq ($(origin MLOPS_SERVING_TOKEN),undefined)
ifneq ($(MLOPS_SERVING_AUTH),off)
export MLOPS_SERVING_TOKEN := $(shell umask 077; mkdir -p $(MLOPS_HOME)/run; \
	f=$(MLOPS_HOME)/run/serving.token; test -s $$f || od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > $$f; cat $$f)
endif
endif
endif
export GX_ANALYTICS_ENABLED ?= false
# The endpoint's loopback port: `make serve`, `make up` and the deployer all use it.
export MLOPS_SERVING_PORT ?= 8000
START ?= 2013-01-01
END ?= 2013-07-31
HOLDOUT_DAYS ?= 31
VALIDATION_DAYS ?= 14
TRIALS ?= 6
FROM ?= 2013-07-01
CLOCK ?= intraday
# the intraday clock's default replay is two weeks; the daily clock's a quarter
TO ?= $(if $(filter daily,$(CLOCK)),2013-09-30,2013-07-14)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup demo replay serve test test-slow lint format typecheck up clean audit soak bench

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version}"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv with the pinned dependencies (idempotent)
	@mkdir -p $(DAGSTER_HOME) $(MLOPS_HOME)/feast
	@command -v kubectl >/dev/null 2>&1 || $(MAKE) --no-print-directory kubectl
	@command -v promtool >/dev/null 2>&1 || $(MAKE) --no-print-directory promtool

demo: setup ## the whole spine (PROFILE=local by default): ingest START..END, train (holdout: last HOLDOUT_DAYS), gate, deploy, score the next day
	@$(START_LOCAL_S3)
	$(BIN)/python -m dagster_project demo --start $(START) --end $(END) \
		--holdout-days $(HOLDOUT_DAYS) --validation-days $(VALIDATION_DAYS) --trials $(TRIALS)

replay: setup ## replay FROM..TO: CLOCK=intraday (5-min steps, stream + scoring at each flight's prediction time) or daily; monitor, retrain on breaches; HTML report (DRIFT=fixed: the old drift alarm)
	@$(START_LOCAL_S3)
	$(BIN)/python -m dagster_project replay --start $(FROM) --end $(TO) --clock $(CLOCK) $(if $(DRIFT),--drift-mode $(DRIFT))

serve: setup ## run the prediction endpoint alone (serves flight_delay@champion; port MLOPS_SERVING_PORT, default 8000)
	$(BIN)/python -m dagster_project.serving --host 127.0.0.1 --port $(MLOPS_SERVING_PORT)

test: setup ## run the test suite (fast tests; slow end-to-end ones: make test-slow)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup ## run only the slow end-to-end tests
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

audit: setup ## pip-audit of requirements.lock; exit 2 (and says so) when the vulnerability service cannot be reached
	$(BIN)/python -m benchmarks.audit requirements.lock

SOAK_SECONDS ?= 600
SOAK_RATE ?= 200
soak: setup ## 10-minute loopback soak of /predict at SOAK_RATE req/s on the current champion (after make demo): errors, latency, RSS, fds
	$(BIN)/python -m benchmarks.soak --seconds $(SOAK_SECONDS) --rate $(SOAK_RATE)

bench: setup ## performance suite (serving, batch, features, training, scaling; ~12 min): benchmarks/report.md + report.json
	$(BIN)/python -m benchmarks.suite --out benchmarks

lint: setup ## ruff lint + format check + mypy + layer contracts (import-linter) + Dagster definitions
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy dagster_project benchmarks
	$(BIN)/lint-imports
	$(BIN)/dagster definitions validate -m dagster_project.definitions

format: setup ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: setup ## mypy over the code location
	$(BIN)/mypy dagster_project benchmarks

# ---- local services: `make up` starts them in the background, `make down` stops them -------------
# State under $(MLOPS_HOME) (Airflow's metadata DB in airflow/, MLflow in mlflow/); pid files and
# logs in $(RUN_DIR). Everything listens on 127.0.0.1 only.
RUN_DIR := $(MLOPS_HOME)/run
DAGSTER_PORT ?= 3000
AIRFLOW_PORT ?= 8080
MLFLOW_PORT ?= 5000
FEAST_PORT ?= 8888
# Feast's own UI reads the registry through the tier's resolved config (what Dagster's FeastResource writes).
FEAST_YAML := $(MLOPS_HOME)/feast/feature_store.yaml
FEAST := $(BIN)/feast -c feature_repo -f $(FEAST_YAML)
DAY ?= 2013-01-05
SERVICES := RUN_DIR=$(RUN_DIR) PY=$(CURDIR)/$(BIN)/python bash infra/local/services.sh
# Airflow 3 standalone (api-server, scheduler, dag-processor, triggerer): DAGs from airflow_dags/,
# no examples, no login (every local user is admin), the Dagster connection preconfigured.
# A task's calls to the execution API wait 30 s, not 5 (on a busy 2-core laptop, a task started
# while the API server is still warming up timed out), and are retried 10 times, 5 s or more
# apart, not 5 times 1 s apart: standalone starts the scheduler beside the API server, and on a
# loaded machine the first scheduled tasks were launched before it listened ("Connection
# refused" in the executor, the task up for retry with nothing in its own log). The triggerer runs the deferred Dagster
# waits; it imports dagster_trigger.trigger by classpath, hence the DAGs folder on PYTHONPATH.
# MLOPS_CLOCK_OFFSET_DAYS (the simulated clock, default 0: scheduled runs for today's date are
# skipped) passes through: see docs/airflow.md.
AIRFLOW_ENV := PATH="$(CURDIR)/$(BIN):$$PATH" \
	PYTHONPATH="$(CURDIR)/airflow_dags$${PYTHONPATH:+:$$PYTHONPATH}" \
	AIRFLOW_HOME=$(MLOPS_HOME)/airflow \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/airflow_dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True \
	AIRFLOW__CORE__PARALLELISM=4 \
	AIRFLOW__API__HOST=127.0.0.1 \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__API__BASE_URL=http://127.0.0.1:$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/ \
	AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT=30 \
	AIRFLOW__WORKERS__EXECUTION_API_RETRIES=10 \
	AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN=5 \
	AIRFLOW_CONN_DAGSTER_DEFAULT='{"conn_type": "http", "host": "127.0.0.1", "port": $(DAGSTER_PORT)}'
ARGS ?= dags list
.PHONY: down airflow airflow-env airflow-trigger feast-registry

# PROFILE=server without an S3 endpoint of your own: the in-memory one (idempotent).
START_LOCAL_S3 = if [ -n "$(LOCAL_S3)" ]; then \
	$(SERVICES) start s3 $(MLOPS_S3_ENDPOINT_URL) $(BIN)/moto_server -H 127.0.0.1 -p $(S3_PORT) \
	&& $(SERVICES) wait s3 >/dev/null; fi

# The tier's MLflow store and artifact root (PostgreSQL and S3 on `server`), read from settings.
MLFLOW_STORE = $(shell $(BIN)/python -c 'from dagster_project.platform import settings; \
	p = settings.paths(); print("--backend-store-uri", p.mlflow_tracking_uri, "--default-artifact-root", p.mlflow_artifacts)')

ifeq ($(PROFILE),k8s-docker)
up: setup ## PROFILE=k8s-docker: dockerd, the image, code server + serving + consumer containers, Dagster webserver/daemon launching runs and steps in containers
	@$(START_LOCAL_S3)
	@RUN_DIR=$(RUN_DIR) PY=$(CURDIR)/$(BIN)/python BIN=$(CURDIR)/$(BIN) bash infra/docker/tier.sh up

down: ## stop what `make up` started
	@RUN_DIR=$(RUN_DIR) PY=$(CURDIR)/$(BIN)/python BIN=$(CURDIR)/$(BIN) bash infra/docker/tier.sh down
	@$(SERVICES) stop s3
else
up: setup ## start Dagster (UI + daemon), Airflow, MLflow UI, Feast UI, serving and the stream consumer in the background (PROFILE=server: on PostgreSQL, Redis, S3)
	@mkdir -p $(RUN_DIR) $(DAGSTER_HOME) $(MLOPS_HOME)/airflow $(MLOPS_HOME)/mlflow/artifacts
	@echo "Starting the $(PROFILE) tier's services (state in $(MLOPS_HOME), logs in $(RUN_DIR)):"
	@$(START_LOCAL_S3)
	@$(BIN)/python -m dagster_project init
	@$(SERVICES) start mlflow http://127.0.0.1:$(MLFLOW_PORT) \
		$(BIN)/mlflow ui $(MLFLOW_STORE) -h 127.0.0.1 -p $(MLFLOW_PORT)
	@$(SERVICES) start dagster http://127.0.0.1:$(DAGSTER_PORT) \
		$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(DAGSTER_PORT)
	@$(SERVICES) start airflow http://127.0.0.1:$(AIRFLOW_PORT) \
		env $(AIRFLOW_ENV) $(BIN)/airflow standalone
	@$(MAKE) --no-print-directory feast-registry
	@$(SERVICES) start feast http://127.0.0.1:$(FEAST_PORT) \
		$(FEAST) ui -h 127.0.0.1 -p $(FEAST_PORT)
	@# serving opens the MLflow database too: let MLflow create it first (two creators race)
	@$(SERVICES) wait mlflow >/dev/null || true
	@$(SERVICES) start serving http://127.0.0.1:$(MLOPS_SERVING_PORT) \
		$(BIN)/python -m dagster_project.serving --host 127.0.0.1 --port $(MLOPS_SERVING_PORT)
	@$(SERVICES) start consumer - $(BIN)/python -m dagster_project consume
	@echo "Waiting for them to answer:"
	@$(SERVICES) wait mlflow dagster airflow feast serving \
		|| echo "Not everything came up (see the logs above); \`make down\` stops what did."
	@echo "Dagster UI (runs, assets) http://127.0.0.1:$(DAGSTER_PORT) | Airflow UI (no login) http://127.0.0.1:$(AIRFLOW_PORT)"
	@echo "MLflow UI http://127.0.0.1:$(MLFLOW_PORT) | Feast UI http://127.0.0.1:$(FEAST_PORT) | serving http://127.0.0.1:$(MLOPS_SERVING_PORT) | stop all: make down"
	@echo "Stream consumer (departure events -> live origin traffic): log $(RUN_DIR)/consumer.log"
	@if [ -n "$$MLOPS_SERVING_TOKEN" ]; then echo "The endpoint wants 'Authorization: Bearer <token>' (the token: \$$MLOPS_SERVING_TOKEN, or $(RUN_DIR)/serving.token when make made it)"; fi
	@echo "Try: make airflow-trigger DAY=2013-01-05   (Airflow run -> Dagster run tagged airflow/dag_id)"

down: ## stop what `make up` started
	@$(SERVICES) stop consumer serving feast mlflow airflow dagster s3
endif

feast-registry: setup ## write the tier's Feast config under MLOPS_HOME; `feast apply` (on `local` only if no registry yet)
	@$(BIN)/python -c 'from dagster_project.features import feast_store as f; from dagster_project.platform import settings as s; \
		p = s.paths(); f.resolve_config(p.feast_template, p.feast_dir, p.feast_overrides())'
	@mkdir -p $(RUN_DIR)
	@{ [ "$(PROFILE)" = local ] && test -f $(MLOPS_HOME)/feast/registry.db; } \
		|| $(FEAST) apply >$(RUN_DIR)/feast-apply.log 2>&1 \
		|| { echo "feast apply failed; see $(RUN_DIR)/feast-apply.log"; exit 1; }

airflow: setup ## run an Airflow CLI command against the local Airflow: make airflow ARGS="dags list"
	@env $(AIRFLOW_ENV) $(BIN)/airflow $(ARGS)

airflow-env: ## print the environment `make up` starts Airflow in, one VAR=value a line (the scheduler test reads it)
	@env $(AIRFLOW_ENV) env

airflow-trigger: setup ## trigger flights__daily_ingest in the running Airflow for DAY (default 2013-01-05)
	@env $(AIRFLOW_ENV) $(BIN)/airflow dags trigger flights__daily_ingest \
		--logical-date $(DAY)T00:00:00+00:00 --output plain

# ---- the container tier's image: air-gapped (mmdebstrap base, wheelhouse, --network none) -------
IMAGE ?= flight-mlops:0.1.0
export IMAGE
.PHONY: image docker-engine

docker-engine: ## install docker.io + mmdebstrap when missing (Debian) and start dockerd when it does not answer
	@bash infra/docker/engine.sh

image: setup ## build IMAGE air-gapped: Debian base (mmdebstrap) or PYTHON_IMAGE=python:3.11..., wheelhouse, docker build --network none; prints the size
	@PY=$(CURDIR)/$(BIN)/python bash infra/docker/image.sh

# ---- Kubernetes tier: manifests in infra/k8s, Helm values in infra/helm, image in infra/docker ----
OVERLAYS ?= staging prod
.PHONY: k8s-render kubectl promtool

k8s-render: ## print the rendered Kubernetes manifests of each overlay (OVERLAYS=prod for one)
	@command -v kubectl >/dev/null 2>&1 || { echo "kubectl is missing: make kubectl"; exit 1; }
	@for o in $(OVERLAYS); do echo "# ---- infra/k8s/overlays/$$o"; kubectl kustomize infra/k8s/overlays/$$o || exit 1; done

kubectl: ## install kubectl when missing (Debian: package kubectl, else kubernetes-client); renders the overlays offline
	@if command -v kubectl >/dev/null 2>&1; then exit 0; fi; \
	if [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; \
	  else echo "kubectl is missing: sudo apt-get install -y kubectl (the infra tests need it)"; exit 0; fi; \
	  install() { $$SUDO apt-get install -y kubectl || $$SUDO apt-get install -y kubernetes-client; }; \
	  install || { $$SUDO apt-get update && install; }; \
	else echo "kubectl is missing: install it from your package manager (the infra tests need it)"; fi

promtool: ## install promtool when missing (Debian: package prometheus); the /metrics test runs `promtool check metrics`
	@if command -v promtool >/dev/null 2>&1; then exit 0; fi; \
	if [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; \
	  else echo "promtool is missing: sudo apt-get install -y prometheus (the metrics test needs it)"; exit 0; fi; \
	  install() { $$SUDO apt-get install -y --no-install-recommends prometheus; }; \
	  install || { $$SUDO apt-get update && install; }; \
	else echo "promtool is missing: the metrics test falls back to prometheus_client's parser"; fi

clean: down ## stop the services, then remove all local state (.mlops), keeping .venv
	rm -rf $(MLOPS_HOME)
