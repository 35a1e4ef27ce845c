"""The model's inputs and the one transform shared by training and serving.

A :class:`Preprocessor` is fitted on the training rows only, serialised as JSON next to the
model, and applied unchanged at serving time: categorical keys become integer codes (0 is
"unknown"), missing numbers are imputed with the training median, and numbers are standardised
for the neural network (tree models read the imputed, unscaled values).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.features.aggregates import VIEWS
from dagster_project.features.engineering import WEATHER_COLUMNS
from dagster_project.platform.names import FEATURE_SERVICE, FEATURE_SERVICE_V1, FEATURE_SERVICE_V2

# Entity keys the model reads as categories (the tail number has too many levels to help).
CATEGORICAL = ("carrier", "origin", "route")
NUMERIC_V1 = (
    *WEATHER_COLUMNS,
    "precip_3h",
    "carrier_departures_7d",
    "carrier_mean_dep_delay_7d",
    "carrier_delayed_share_7d",
    "route_departures_28d",
    "route_mean_dep_delay_28d",
    "route_delayed_share_28d",
    "plane_age",
    "plane_seats",
    "plane_engines",
    "dep_hour",
    "dep_dow",
    "dep_month",
    "log_distance",
)
STREAM_NUMERIC = tuple(f for v in VIEWS.values() for f in v.features)
# The numeric inputs of a model trained on each FeatureService
SERVICE_NUMERIC: dict[str, tuple[str, ...]] = {
    FEATURE_SERVICE_V1: NUMERIC_V1,
    FEATURE_SERVICE_V2: (*NUMERIC_V1, *STREAM_NUMERIC),
}
NUMERIC = SERVICE_NUMERIC[FEATURE_SERVICE]  # a new model's, by default
FEATURES = (*CATEGORICAL, *NUMERIC)


def numeric_of(service: str) -> tuple[str, ...]:
    try:
        return SERVICE_NUMERIC[service]
    except KeyError:
        raise ValueError(
            f"no model inputs known for FeatureService {service!r}; one of {sorted(SERVICE_NUMERIC)}"
        ) from None


def features_of(numeric: Sequence[str]) -> tuple[str, ...]:
    return (*CATEGORICAL, *numeric)


UNKNOWN = "__unknown__"
# A frame, or (the endpoint's hot path) its columns: name -> one value per row.
Inputs = pd.DataFrame | Mapping[str, Sequence[Any]]


def n_rows(inputs: Inputs) -> int:
    if isinstance(inputs, pd.DataFrame):
        return len(inputs)
    return len(inputs[CATEGORICAL[0]])


@dataclass
class Preprocessor:
    categories: dict[str, list[str]] = field(default_factory=dict)
    medians: dict[str, float] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    # The numeric inputs, in order (models saved before v2 did not record them: v1's)
    numeric: list[str] = field(default_factory=lambda: list(NUMERIC_V1))

    @classmethod
    def fit(cls, df: pd.DataFrame, numeric: Sequence[str] = NUMERIC) -> Preprocessor:
        missing = [c for c in features_of(numeric) if c not in df.columns]
        if missing:
            raise ValueError(f"training frame lacks feature columns: {', '.join(missing)}")
        cats = {c: sorted(df[c].dropna().astype(str).unique().tolist()) for c in CATEGORICAL}
        num = df[list(numeric)].astype("float64")
        medians = num.median().fillna(0.0)
        filled = num.fillna(medians)
        stds = filled.std(ddof=0).replace(0.0, 1.0).fillna(1.0)
        return cls(
            categories=cats,
            medians={str(k): float(v) for k, v in medians.items()},
            means={str(k): float(v) for k, v in filled.mean().items()},
            stds={str(k): float(v) for k, v in stds.items()},
            numeric=list(numeric),
        )

    @property
    def features(self) -> tuple[str, ...]:
        return features_of(self.numeric)

    def cardinalities(self) -> dict[str, int]:
        """Number of codes per categorical column, including the "unknown" code 0."""
        return {c: len(v) + 1 for c, v in self.categories.items()}

    def _lookups(self) -> dict[str, dict[str, int]]:
        """Category -> code per categorical column, built once per fitted preprocessor."""
        cached = self.__dict__.get("_lookup_cache")
        if cached is None:
            cached = {c: {v: i + 1 for i, v in enumerate(self.categories[c])} for c in CATEGORICAL}
            self.__dict__["_lookup_cache"] = cached
        return cached

    def codes(self, df: Inputs) -> np.ndarray:
        """Integer codes, shape (rows, len(CATEGORICAL)); unseen or missing values map to 0."""
        lookups = self._lookups()
        if not isinstance(df, pd.DataFrame):  # columns of a request: a dict lookup per cell
            n = n_rows(df)
            out = np.zeros((n, len(CATEGORICAL)), dtype="int64")
            for j, c in enumerate(CATEGORICAL):
                lookup = lookups[c]
                out[:, j] = [lookup.get(v, 0) if isinstance(v, str) else 0 for v in df[c]]
            return out
        cols = []
        for c in CATEGORICAL:
            values = df[c].astype(object).map(lookups[c])
            cols.append(values.fillna(0).to_numpy(dtype="int64"))
        return np.stack(cols, axis=1) if cols else np.zeros((len(df), 0), dtype="int64")

    def numbers(self, df: Inputs, scale: bool) -> np.ndarray:
        """Imputed (and optionally standardised) numeric block, shape (rows, len(numeric)):
        always finite (missing, unparseable and infinite values become the training median)."""
        numeric = self.numeric
        if isinstance(df, pd.DataFrame):
            block = df[list(numeric)]
            num = block.apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64")
        else:  # columns of a request, already float arrays (NaN = missing)
            num = np.column_stack([np.asarray(df[c], dtype="float64") for c in numeric])
        # Positional, in numeric order (pandas would realign a Series by label and reorder).
        medians = np.array([self.medians[c] for c in numeric])
        # missing and non-finite values (NaN, +-inf) alike get the training median
        num = np.where(np.isfinite(num), num, medians)
        if scale:
            means = np.array([self.means[c] for c in numeric])
            stds = np.array([self.stds[c] for c in numeric])
            num = (num - means) / stds
        # absurd magnitudes stay finite in float32 (no real feature comes near 1e30)
        return np.clip(num, -1e30, 1e30).astype("float32")

    def tree_matrix(self, df: Inputs) -> np.ndarray:
        """Codes then raw numbers, for gradient-boosted trees."""
        return np.hstack([self.codes(df).astype("float32"), self.numbers(df, scale=False)])

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


def input_frame(df: pd.DataFrame, numeric: Sequence[str] | None = None) -> pd.DataFrame:
    """The model's input columns in their canonical order and dtypes (the MLflow signature);
    ``numeric``: the model's numeric inputs (default: a new model's, :data:`NUMERIC`)."""
    numeric = NUMERIC if numeric is None else numeric
    out = pd.DataFrame(index=df.index)
    for c in CATEGORICAL:
        out[c] = df[c].astype("string").fillna(UNKNOWN).astype(object)
    for c in numeric:
        out[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return out.reset_index(drop=True)
