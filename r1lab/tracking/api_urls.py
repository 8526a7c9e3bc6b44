from django.urls import path

from r1lab.tracking import api

app_name = "api"
urlpatterns = [
    path("openapi.json", api.openapi, name="openapi"),
    path("runs", api.runs, name="runs"),
    path("runs/<int:run_id>/log", api.run_log, name="run_log"),
    path("runs/<int:run_id>/rewind", api.run_rewind, name="run_rewind"),
    path("runs/<int:run_id>/config", api.run_config, name="run_config"),
    path("runs/<int:run_id>/finish", api.run_finish, name="run_finish"),
    path("runs/<int:run_id>/metrics", api.run_metrics, name="run_metrics"),
]
