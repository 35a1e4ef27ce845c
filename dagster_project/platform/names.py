"""The names the platform's parts share, in one place: Feast project and services, the MLflow
registered model, experiment and aliases. Asset keys live with their assets (``defs/``)."""

FEAST_PROJECT = "flight_mlops"
FEATURE_SERVICE = "flight_delay_v1"  # the FeatureService the model is trained and served on
TRAFFIC_SERVICE = "origin_traffic_v1"  # the stream's live origin traffic
MODEL_NAME = "flight_delay"  # MLflow registered model
EXPERIMENT = "flight_delay"  # MLflow experiment of the training runs
CHAMPION = "champion"  # alias of the served version
CHALLENGER = "challenger"  # alias of the latest candidate
BASELINE = "baseline"  # alias of the frozen model a replay's shadow scores (its first champion)
