from django.urls import path

from r1lab.pipelines import views

app_name = "pipelines"
urlpatterns = [
    path("", views.run_list, name="list"),
    path("new/", views.run_new, name="new"),
    path("workers/", views.workers, name="workers"),
    path("models/", views.models_page, name="models"),
    path("models/<int:model_id>/check/", views.base_model_check, name="base_model_check"),
    path("prompt-sets/import/", views.prompt_set_import, name="prompt_import"),
    path("prompt-sets/import/<slug:token>/", views.prompt_import_staged, name="prompt_import_staged"),
    path("prompt-sets/import/<slug:token>/progress.json", views.prompt_import_progress, name="prompt_import_progress"),
    path("<int:run_id>/", views.run_detail, name="detail"),
    path("<int:run_id>/status.json", views.run_status_json, name="status_json"),
    path("<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("<int:run_id>/stages/<int:stage_id>/log/", views.stage_log, name="stage_log"),
    path("<int:run_id>/stages/<int:stage_id>/cancel/", views.stage_cancel, name="stage_cancel"),
    path("<int:run_id>/stages/<int:stage_id>/resume/", views.stage_resume, name="stage_resume"),
    path("<int:run_id>/stages/<int:stage_id>/retry/", views.stage_retry, name="stage_retry"),
    path("<int:run_id>/stages/<int:stage_id>/fork/", views.stage_fork, name="stage_fork"),
]
