"""The names the platform's parts share, in one place: Feast project and services, the MLflow
registered model, experiment and aliases. Asset keys live with their assets (``defs/``)."""

FEAST_PROJECT = "flight_mlops"
FEATURE_SERVICE_V1 = "flight_delay_v1"  # day-level stats, weather, plane, request features
FEATURE_SERVICE_V2 = "flight_delay_v2"  # v1 + the departure stream's features (lead-time models)
# What a new model trains on (each version records its own; the endpoint reads, for the model
# it serves, that version's service)
FEATURE_SERVICE = FEATURE_SERVICE_V2
TRAFFIC_SERVICE = "origin_traffic_v1"  # the stream's live origin traffic
MODEL_NAME = "flight_delay"  # MLflow registered model
EXPERIMENT = "flight_delay"  # MLflow experiment of the training runs
CHAMPION = "champion"  # alias of the served version
CHALLENGER = "challenger"  # alias of the latest candidate
CANDIDATE = "candidate"  # a challenger that passed the gate, scored in shadow before promotion
BASELINE = "baseline"  # alias of the frozen model a replay's shadow scores (its first champion)
