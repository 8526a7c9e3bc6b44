"""`/api/2.0/mlflow/…`: the MLflow tracking protocol (see mlflow_api). Paths are MLflow's own
(mlflow/protos/service.proto); anything else under it answers MLflow's ENDPOINT_NOT_FOUND, and
artifact endpoints a clear error (r1lab stores no artifacts)."""
from django.urls import path, re_path

from r1lab.tracking import mlflow_api as api

urlpatterns = [
    path("api/2.0/mlflow/experiments/get-by-name", api.experiment_get_by_name, name="mlflow_experiment_get_by_name"),
    path("api/2.0/mlflow/experiments/create", api.experiment_create, name="mlflow_experiment_create"),
    path("api/2.0/mlflow/experiments/get", api.experiment_get, name="mlflow_experiment_get"),
    path("api/2.0/mlflow/runs/create", api.run_create, name="mlflow_run_create"),
    path("api/2.0/mlflow/runs/get", api.run_get, name="mlflow_run_get"),
    path("api/2.0/mlflow/runs/update", api.run_update, name="mlflow_run_update"),
    path("api/2.0/mlflow/runs/search", api.run_search, name="mlflow_run_search"),
    path("api/2.0/mlflow/runs/log-batch", api.run_log_batch, name="mlflow_run_log_batch"),
    path("api/2.0/mlflow/runs/log-metric", api.run_log_metric, name="mlflow_run_log_metric"),
    path("api/2.0/mlflow/runs/log-parameter", api.run_log_parameter, name="mlflow_run_log_parameter"),
    path("api/2.0/mlflow/runs/set-tag", api.run_set_tag, name="mlflow_run_set_tag"),
    path("api/2.0/mlflow/metrics/get-history", api.metric_history, name="mlflow_metric_history"),
    path("api/2.0/mlflow/artifacts/list", api.artifacts),
    re_path(r"^api/2\.0/mlflow-artifacts/(?P<rest>.*)$", api.artifacts),
    re_path(r"^api/[23]\.0/mlflow/(?P<rest>.*)$", api.not_served),
]
