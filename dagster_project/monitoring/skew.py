"""Training/serving skew: the feature vector the endpoint used for a prediction against the row
the offline store builds for the same flight, FeatureService and as-of time (what a training
set would have held). The target is no difference at all."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from dagster_project.features.engineering import TS, epoch_seconds, request_entity

# (entity rows with event_timestamp, FeatureService) -> the offline rows, with flight_id
Historical = Callable[[pd.DataFrame, str], pd.DataFrame]


@dataclass
class SkewResult:
    predictions: int = 0  # predictions compared (those that logged an as-of time)
    cells: int = 0
    differing: int = 0
    by_feature: dict[str, dict[str, int]] = field(default_factory=dict)  # cells, differing
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few differing cells

    @property
    def share(self) -> float:
        return self.differing / self.cells if self.cells else 0.0

    def table(self) -> pd.DataFrame:
        """Per feature: cells compared, cells differing and their share."""
        rows = [
            {
                "feature": name,
                "cells": c["cells"],
                "differing": c["differing"],
                "share": c["differing"] / c["cells"] if c["cells"] else 0.0,
            }
            for name, c in sorted(self.by_feature.items())
        ]
        return pd.DataFrame(rows, columns=["feature", "cells", "differing", "share"])


def entities(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One entity row per logged prediction that names its as-of time and service: the keys
    the endpoint read with, ``event_timestamp`` = the as-of time, and the request data."""
    rows = []
    for i, r in enumerate(records):
        flight, as_of, service = r.get("flight") or {}, r.get("as_of"), r.get("feature_service")
        if not as_of or not service or not flight:
            continue
        sched = datetime.fromisoformat(str(flight["scheduled_departure"]))
        row = request_entity(
            str(flight["carrier"]),
            str(flight["origin"]),
            str(flight["dest"]),
            flight.get("tailnum"),
            epoch_seconds(sched),
            float(flight["distance"]),
        )
        row |= {"flight_id": f"{i}:{flight.get('flight_id')}", "feature_service": service}
        row[TS] = pd.Timestamp(as_of).tz_convert("UTC")
        rows.append(row)
    return pd.DataFrame(rows)


def _same(a: Any, b: Any) -> bool:
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    if missing_a or missing_b:
        return missing_a and missing_b
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return float(a) == float(b)


def measure(
    records: Sequence[dict[str, Any]], historical: Historical, max_examples: int = 10
) -> SkewResult:
    """Compare every logged feature of every prediction with the offline store's value."""
    result = SkewResult()
    ents = entities(records)
    if ents.empty:
        return result
    logged = {f"{i}:{(r.get('flight') or {}).get('flight_id')}": r for i, r in enumerate(records)}
    for service, group in ents.groupby("feature_service"):
        offline = historical(group.drop(columns="feature_service"), str(service))
        offline = offline.set_index("flight_id")
        for key in group["flight_id"]:
            features = logged[key].get("features") or {}
            row = offline.loc[key]
            result.predictions += 1
            for name, value in features.items():
                if name not in row.index:
                    continue
                expected = row[name]
                expected = expected.item() if hasattr(expected, "item") else expected
                counts = result.by_feature.setdefault(name, {"cells": 0, "differing": 0})
                counts["cells"] += 1
                result.cells += 1
                if not _same(value, expected):
                    counts["differing"] += 1
                    result.differing += 1
                    if len(result.examples) < max_examples:
                        result.examples.append(
                            {
                                "flight_id": key.split(":", 1)[1],
                                "as_of": str(row.get(TS)),
                                "feature": name,
                                "served": value,
                                "offline": expected,
                            }
                        )
    return result
