"""Holdout ROC AUC per model family and prediction time, each model trained at its own lead.

On a state folder where `make demo` ran (the offline feature tables of 2013-01-01..2013-07-31):
for each prediction time (the day's start, 180, 120, 60 and 30 minutes before departure) the
training set is built by the offline store's point-in-time join with `flight_delay_v2` (v1 at
the day's start is shown too), split as the demo splits it (train January to mid-June,
validate to June 30, hold out July), and each family is tuned with ``--trials`` Optuna trials
on validation AUC; the table gives the holdout AUC. Also, the lead-60 model scored at every
other prediction time (what the `lead_time_evaluation` asset logs for a version).

``python -m benchmarks.lead_time [--trials 2] [--json] [--plot docs/lead-time.png]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks import common
from dagster_project.features import engineering
from dagster_project.platform import names, settings
from dagster_project.platform.settings import feast_template
from dagster_project.training import evaluation, lead_time, models, pipeline, preprocess


def _say(msg: str) -> None:
    print(f"lead_time: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default="2013-07-31")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--kinds", default="xgboost,torch")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", default=None, help="write the AUC-by-lead plot here")
    args = parser.parse_args(argv)

    import optuna

    from dagster_project.features.feast_store import FeatureStoreClient
    from dagster_project.platform import storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    paths = settings.paths()
    client = FeatureStoreClient(feast_template("local"), paths.feast_dir, paths.features_url)
    flights = pd.concat(
        [
            storage.read_parquet(u)
            for u in storage.list_files(
                storage.join(paths.lake_url, "validated_flights"), ".parquet"
            )
        ],
        ignore_index=True,
    )
    flights = flights[flights["flight_date"].between(args.start, args.end)]
    options = pipeline.TrainingOptions(n_trials=args.trials)
    rows: list[dict[str, Any]] = []
    trained: dict[str, Any] = {}
    cases = [("day_start", names.FEATURE_SERVICE_V1)] + [
        (label, names.FEATURE_SERVICE_V2) for label in lead_time.LEADS
    ]
    for label, service in cases:
        kind_, lead = engineering.parse_prediction_label(label)
        started = time.perf_counter()
        entities = engineering.training_entities(flights, kind_, lead)
        df = client.historical_features(entities, service)
        df = df.sort_values([engineering.TS, "flight_id"], kind="stable").reset_index(drop=True)
        build_s = time.perf_counter() - started
        split = pipeline.time_split(df, options.holdout_days, options.validation_days)
        numeric = preprocess.numeric_of(service)
        for kind in args.kinds.split(","):
            started = time.perf_counter()
            study = optuna.create_study(
                direction="maximize", sampler=optuna.samplers.TPESampler(seed=options.seed)
            )
            best: tuple[float, Any] = (-1.0, None)
            y_val = split.validation[engineering.LABEL].to_numpy()
            for _ in range(args.trials):
                trial = study.ask()
                params = pipeline.suggest(kind, trial, options)
                model = models.FITTERS[kind](split.train, split.validation, params, None, numeric)
                auc = evaluation.evaluate(y_val, model.predict_proba(split.validation), 0.5).roc_auc
                study.tell(trial, auc)
                if auc > best[0]:
                    best = (auc, model)
            model = best[1]
            y = split.holdout[engineering.LABEL].to_numpy()
            holdout = evaluation.evaluate(y, model.predict_proba(split.holdout), 0.5).roc_auc
            rows.append(
                {
                    "prediction_time": label,
                    "feature_service": service,
                    "kind": kind,
                    "validation_auc": round(best[0], 4),
                    "holdout_auc": round(holdout, 4),
                    "holdout_rows": len(split.holdout),
                    "training_set_seconds": round(build_s, 2),
                    "fit_seconds": round(time.perf_counter() - started, 1),
                }
            )
            _say(f"{label} {service} {kind}: holdout AUC {holdout:.4f}")
            if label == "lead_60" and service == names.FEATURE_SERVICE_V2:
                trained[kind] = (model, split)
    # the lead-60 models scored at every prediction time of the same holdout flights
    across = []
    holdout_days = set(trained[next(iter(trained))][1].holdout["flight_id"]) if trained else set()
    hold_flights = flights[flights["flight_id"].isin(holdout_days)]
    for label in lead_time.LEADS:
        kind_, lead = engineering.parse_prediction_label(label)
        frame = client.historical_features(
            engineering.training_entities(hold_flights, kind_, lead), names.FEATURE_SERVICE_V2
        )
        y = frame[engineering.LABEL].to_numpy()
        for kind, (model, _) in trained.items():
            auc = evaluation.evaluate(y, model.predict_proba(frame), 0.5).roc_auc
            across.append(
                {"prediction_time": label, "kind": kind, "lead_60_model_auc": round(auc, 4)}
            )
    result = {
        "range": [args.start, args.end],
        "trials": args.trials,
        "trained_at_each_lead": rows,
        "lead_60_model_at_each_lead": across,
        "load_average": common.load_average(),
    }
    if args.plot:
        table = pd.DataFrame(rows)
        best_per_lead = (
            table[table["feature_service"] == names.FEATURE_SERVICE_V2]
            .groupby("prediction_time", sort=False)["holdout_auc"]
            .max()
            .reindex(list(lead_time.LEADS))
        )
        plot_table = pd.DataFrame(
            {
                "prediction_time": best_per_lead.index,
                "minutes_before_departure": [
                    lead_time.minutes_before(lbl) for lbl in best_per_lead.index
                ],
                "roc_auc": best_per_lead.to_numpy(),
            }
        )
        lead_time.plot(
            plot_table,
            "July 2013 holdout, best family trained at each prediction time",
            Path(args.plot),
        )
    if args.json:
        print(json.dumps(result))
    else:
        print(pd.DataFrame(rows).to_markdown(index=False))
        if across:
            print(pd.DataFrame(across).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
