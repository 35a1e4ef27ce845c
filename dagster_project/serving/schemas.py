"""Request and response bodies of the prediction endpoint (Pydantic; a bad field is a 422)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import JsonDict, JsonValue

from dagster_project.ingestion import sources
from dagster_project.ingestion.expectations import NYC_ORIGINS, TERRITORY_AIRPORTS

EXAMPLE_FLIGHT: dict[str, Any] = {
    "carrier": "UA",
    "origin": "EWR",
    "dest": "ORD",
    "tailnum": "N24211",
    "scheduled_departure": "2013-08-01T08:00:00",
    "distance": 719,
}


def _origins(schema: JsonDict) -> None:
    schema["enum"] = list[JsonValue](sorted(NYC_ORIGINS))


def _destinations(schema: JsonDict) -> None:
    schema["enum"] = list[JsonValue](sorted(known_airports()))


# The OpenAPI document states everything the validators enforce (enums, patterns, lengths,
# ranges), so that a request valid by the schema is accepted and an invalid one is a 422.
# Values are taken as sent (no whitespace stripping): " UA" is not a carrier code.


class Flight(BaseModel):
    """One scheduled departure. A naive ``scheduled_departure`` is New York local time."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": EXAMPLE_FLIGHT})

    carrier: str = Field(
        pattern=r"^[A-Z0-9]{2}$",
        min_length=2,
        max_length=2,
        description="two-character airline code (an unknown one gets the fallback)",
    )
    origin: str = Field(
        description="NYC departure airport: EWR, JFK or LGA", json_schema_extra=_origins
    )
    dest: str = Field(
        description="FAA code of the destination airport", json_schema_extra=_destinations
    )
    tailnum: str | None = Field(
        default=None,
        pattern=r"^[A-Z0-9-]{1,10}$",
        max_length=10,
        description="aircraft tail number (an unknown one gets the fallback)",
    )
    scheduled_departure: datetime = Field(description="ISO 8601; naive = New York local time")
    distance: float = Field(gt=0, le=10000, description="route distance in miles")
    flight_id: str | None = Field(default=None, max_length=64, description="caller's reference")

    @field_validator("scheduled_departure", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        """The schema says an ISO 8601 string; Pydantic alone would also take a number as Unix
        seconds (schemathesis: a schema-violating request accepted). A ``datetime`` passes, for
        callers that build a ``Flight`` in Python."""
        if isinstance(value, str | datetime):
            return value
        raise ValueError(
            f"scheduled_departure must be an ISO 8601 date-time string, not {type(value).__name__}"
        )

    @field_validator("origin")
    @classmethod
    def _nyc_origin(cls, value: str) -> str:
        if value not in NYC_ORIGINS:
            raise ValueError(f"unknown origin airport {value!r}: must be one of EWR, JFK, LGA")
        return value

    @field_validator("dest")
    @classmethod
    def _known_dest(cls, value: str) -> str:
        if value not in known_airports():
            raise ValueError(f"unknown destination airport {value!r} (not an FAA airport code)")
        return value


@functools.cache
def known_airports() -> frozenset[str]:
    """FAA codes of the airports table, plus the US territories' airports it lacks."""
    return frozenset(sources.load_table("airports")["faa"].astype(str)) | TERRITORY_AIRPORTS


MAX_BATCH = 10_000  # flights per /predict/batch request


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flights: list[Flight] = Field(min_length=1, max_length=MAX_BATCH)


class Prediction(BaseModel):
    flight_id: str | None
    probability: float = Field(description="probability of departing more than 15 minutes late")
    delayed: bool = Field(description="the decision: probability >= threshold")
    threshold: float
    threshold_policy: str = Field(
        description="the rule that chose the model's threshold on its validation window: "
        "base_rate (flags as many flights as are delayed), cost:<ratio> (a missed delay costs "
        "<ratio> false alarms) or f1"
    )
    model_name: str
    model_version: str
    model_kind: str
    features: dict[str, Any] = Field(description="feature values the model used (null = imputed)")
    fallback: bool = Field(
        description="true when an entity was unknown (no online features, or a category the "
        "model never saw): its features were imputed with training medians"
    )
    fallbacks: list[str] = Field(description="which lookups fell back, and why")
    missing_features: list[str] = Field(description="features that were null and imputed")


class BatchResponse(BaseModel):
    predictions: list[Prediction]
