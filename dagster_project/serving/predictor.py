"""Flights in, probabilities out: online features from Feast, the model, the prediction log."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import HTTPException

from dagster_project.features.engineering import (
    as_of_epoch,
    epoch_seconds,
    local_date_iso,
    request_entity,
)
from dagster_project.features.feast_store import FeatureStoreClient
from dagster_project.serving import prediction_log
from dagster_project.serving.config import ServingConfig, redact
from dagster_project.serving.metrics import Metrics
from dagster_project.serving.model_holder import ModelHolder
from dagster_project.serving.schemas import (
    Flight,
    Prediction,
)
from dagster_project.training.preprocess import CATEGORICAL, UNKNOWN

log = logging.getLogger("flight_delay.serving")
# An hour before a departure in the first hour of year 1 is not a datetime: such a (valid,
# if odd) request is answered as of the earliest time there is.
_EARLIEST = int(datetime(1, 1, 1, tzinfo=UTC).timestamp())


def settle_heap() -> None:
    """Move everything loaded so far (Feast, MLflow, the model: millions of objects) out of the
    garbage collector's view. Otherwise every full collection walks them all, a pause of tens
    of milliseconds that lands on whichever request triggers it (the p99 at 200 req/s)."""
    gc.collect()
    gc.freeze()


def entity_row(f: Flight) -> dict[str, Any]:
    """Entity keys and request data of the feature services for one flight."""
    return request_entity(
        f.carrier,
        f.origin,
        f.dest,
        f.tailnum,
        epoch_seconds(f.scheduled_departure),
        float(f.distance),
    )


def _json_value(v: Any) -> Any:
    if v is None or v != v:  # None or NaN
        return None
    return v.item() if isinstance(v, np.generic) else v


class Predictor:
    """Everything a prediction needs, callable without HTTP: the champion (loaded once, swapped
    on reload), the online feature lookup, the model inputs, the prediction log and metrics."""

    def __init__(self, config: ServingConfig, metrics: Metrics | None = None):
        self.config = config
        self.holder = ModelHolder(config)
        self.log = prediction_log.open_log(config.prediction_log)
        self.metrics = metrics or Metrics()
        self._feast: FeatureStoreClient | None = None
        self._feast_lock = threading.Lock()
        self._view_columns: dict[str, dict[str, tuple[str, list[str]]]] = {}

    def feast(self) -> FeatureStoreClient:
        if self._feast is None:
            with self._feast_lock:
                if self._feast is None:
                    client = FeatureStoreClient(
                        self.config.feast_config_template,
                        self.config.feast_state_dir,
                        self.config.features_url,
                        self.config.feast_overrides,
                    )
                    client.fail_fast()  # Redis down: a quick 503, not a 7-second hang
                    self._feast = client
        return self._feast

    def view_columns(self, service_name: str) -> dict[str, tuple[str, list[str]]]:
        """Feature view of a FeatureService -> (entity join key, its features), for the
        unknown-entity fallback. Views whose rows say "nothing yet" (an aircraft that has not
        departed today, a carrier with no departure in the window) are not fallbacks."""
        found = self._view_columns.get(service_name)
        if found is None:
            from dagster_project.features.feast_objects import NOTHING_YET_VIEWS

            found = {
                v.name: (key, [f.name for f in v.features])
                for v, key in self.feast().objects().stored_views(service_name)
                if v.name not in NOTHING_YET_VIEWS
            }
            self._view_columns[service_name] = found
        return found

    def reload(self) -> bool:
        try:
            changed = self.holder.reload()
        except Exception as exc:  # keep serving the old model; say why on /ready and the log
            self.holder.error = redact(f"reload failed: {type(exc).__name__}: {exc}")[:500]
            self.metrics.reloads.labels("error").inc()
            log.exception("model reload failed")
            return False
        if changed and self.holder.current:
            self.metrics.reloads.labels("loaded").inc()
            current = self.holder.current
            self.metrics.set_model(current.info.version, current.kind, current.service)
            settle_heap()
        return changed

    def predict(self, flights: list[Flight]) -> list[Prediction]:
        """The predictions as response models (see :meth:`predict_records`)."""
        return [Prediction.model_construct(**r) for r in self.predict_records(flights)]

    def predict_records(self, flights: list[Flight]) -> list[dict[str, Any]]:
        """One `Prediction`-shaped dict per flight, logged and counted; plain dicts, so a
        1,000-flight batch is not validated twice on the way out."""
        current = self.holder.current
        if current is None:
            raise HTTPException(503, f"no model to serve: {self.holder.error}")
        rows = [entity_row(f) for f in flights]
        when = current.info.prediction_time
        as_of = [max(as_of_epoch(when, r["sched_dep_epoch_s"]), _EARLIEST) for r in rows]
        try:
            started = time.perf_counter()
            online = self.feast().online_lookup(
                rows,
                current.service,
                [datetime.fromtimestamp(t, UTC) for t in as_of],
            )
            self.metrics.lookup_latency.observe(time.perf_counter() - started)
        except Exception as exc:
            log.exception("online feature lookup failed")
            raise HTTPException(503, f"feature store unavailable: {type(exc).__name__}") from exc
        n = len(rows)
        # The model's inputs as columns (what preprocess.input_frame holds: categories as
        # strings, numbers as float64 with NaN for missing), without a per-request DataFrame.
        columns: dict[str, Any] = {
            c: [r[c] if isinstance(r[c], str) else UNKNOWN for r in rows] for c in CATEGORICAL
        }
        numeric: dict[str, list[Any]] = {}
        model_numeric = current.numeric
        for c in model_numeric:
            found = online.get(c) or [None] * n
            numeric[c] = [_json_value(v) for v in found]
            columns[c] = np.array([np.nan if v is None else v for v in numeric[c]], dtype="float64")
        probs = np.asarray(current.model.predict(columns), dtype="float64").reshape(-1)
        threshold = current.info.threshold
        out, records = [], []
        logged_at = datetime.now(UTC).isoformat()
        view_columns = self.view_columns(current.service)
        ids = os.urandom(16 * n)
        decisions = {True: 0, False: 0}
        n_fallbacks = 0
        for i, f in enumerate(flights):
            values = {c: rows[i][c] for c in CATEGORICAL} | {
                c: numeric[c][i] for c in model_numeric
            }
            missing = [c for c in model_numeric if values[c] is None]
            fallbacks = [
                f"{view}: no online values for {key} {rows[i].get(key)!r} (none, or older "
                "than the view's TTL)"
                for view, (key, cols) in view_columns.items()
                if all(values.get(c) is None for c in cols)
            ] + [
                f"{c} {values[c]!r} was not seen in training"
                for c in CATEGORICAL
                if values[c] not in current.known[c]
            ]
            p = float(probs[i])
            delayed = p >= threshold
            pred = {
                "flight_id": f.flight_id,
                "probability": p,
                "delayed": delayed,
                "threshold": threshold,
                "threshold_policy": current.info.threshold_policy,
                "model_name": current.info.name,
                "model_version": current.info.version,
                "model_kind": current.kind,
                "features": values,
                "fallback": bool(fallbacks),
                "fallbacks": fallbacks,
                "missing_features": missing,
            }
            out.append(pred)
            decisions[delayed] += 1
            n_fallbacks += bool(fallbacks)
            records.append(
                {
                    "request_id": str(uuid.UUID(bytes=ids[16 * i : 16 * i + 16], version=4)),
                    "logged_at": logged_at,
                    "scheduled_date": local_date_iso(rows[i]["sched_dep_epoch_s"]),
                    "as_of": datetime.fromtimestamp(as_of[i], UTC).isoformat(),
                    "feature_service": current.service,
                    "flight": f.model_dump(mode="json"),
                    **{k: v for k, v in pred.items() if k != "flight_id"},
                }
            )
        for delayed, count in decisions.items():
            if count:
                self.metrics.predictions.labels(current.info.version, str(delayed).lower()).inc(
                    count
                )
        if n_fallbacks:
            self.metrics.fallbacks.inc(n_fallbacks)
        self.log.append(records)
        return out
