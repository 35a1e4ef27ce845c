"""The served model: loaded from the MLflow registry's `champion` alias, swapped on reload."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.serving.config import ServingConfig, ServingConfigError, under_roots
from dagster_project.training import tracking
from dagster_project.training.preprocess import CATEGORICAL, NUMERIC_V1, input_frame

log = logging.getLogger("flight_delay.serving")


class DirectModel:
    """The champion's ``pyfunc``, called past MLflow's per-call input validation.

    The endpoint builds the inputs itself, in the signature's columns and dtypes (checked once
    here, at load), so the per-request schema enforcement (over a millisecond for one row)
    would only re-check that. ``predict`` takes the input columns (name -> values), or a frame;
    a signature that does not match the platform's inputs keeps MLflow's own path."""

    def __init__(self, pyfunc: Any):
        self.pyfunc = pyfunc
        inner = getattr(pyfunc.unwrap_python_model(), "model", None)
        pre = getattr(inner, "preprocessor", None)
        self.numeric: tuple[str, ...] = tuple(pre.numeric) if pre is not None else NUMERIC_V1
        self.features: tuple[str, ...] = (*CATEGORICAL, *self.numeric)
        schema = pyfunc.metadata.get_input_schema()
        names = tuple(schema.input_names()) if schema is not None else ()
        direct = names == self.features and hasattr(inner, "predict_proba")
        self.inner = inner if direct else None

    def unwrap_python_model(self) -> Any:
        return self.pyfunc.unwrap_python_model()

    def predict(self, inputs: Any) -> np.ndarray:
        if self.inner is not None:
            return np.asarray(self.inner.predict_proba(inputs))
        frame = inputs if isinstance(inputs, pd.DataFrame) else pd.DataFrame(dict(inputs))
        return np.asarray(self.pyfunc.predict(frame[list(self.features)]))


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    info: tracking.VersionInfo
    known: dict[str, frozenset[str]]  # categories seen in training, per categorical input

    @property
    def kind(self) -> str:
        return self.info.tags.get("model_kind", "unknown")

    @property
    def service(self) -> str:
        """The FeatureService the version was trained on: the one its requests read."""
        return self.info.feature_service

    @property
    def numeric(self) -> tuple[str, ...]:
        return self.model.numeric


class ModelHolder:
    """The current champion. A reload swaps one reference, so requests never see a half-loaded
    model and in-flight requests finish on the model they started with."""

    def __init__(self, config: ServingConfig):
        self.config = config
        self.current: LoadedModel | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def reload(self) -> bool:
        """Load the version the alias points at, if it changed. True when a new one is live."""
        with self._lock:
            tracking.probe(self.config.tracking_uri)
            registry = tracking.Registry(self.config.tracking_uri, self.config.model_name)
            info = registry.by_alias(self.config.alias)
            if info is None:
                self.error = f"no '{self.config.alias}' version of '{self.config.model_name}' yet"
                return False
            if self.current and self.current.info.version == info.version:
                return False
            if info.status != "READY":
                raise ServingConfigError(
                    f"{info.name} v{info.version} is not fully registered (status {info.status})"
                )
            if self.config.artifact_roots:
                where = registry.download_uri(info.version)
                if not under_roots(where, self.config.artifact_roots):
                    raise ServingConfigError(
                        f"{info.name} v{info.version} is stored at {where}, outside the "
                        f"configured artifact store ({', '.join(self.config.artifact_roots)}): "
                        "refusing to load it"
                    )
            model = DirectModel(registry.load(info.version))
            # One prediction before the swap: it configures the model (XGBoost configures a
            # loaded booster lazily, and concurrent first predictions race on it) and the first
            # real request does not pay for it.
            model.predict(input_frame(pd.DataFrame([dict.fromkeys(model.features)]), model.numeric))
            pre = model.unwrap_python_model().model.preprocessor
            known = {c: frozenset(pre.categories.get(c, [])) for c in CATEGORICAL}
            self.current, self.error = LoadedModel(model, info, known), None
            log.info("serving %s v%s (%s)", info.name, info.version, self.current.kind)
            return True
