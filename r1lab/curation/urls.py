from django.urls import path

from r1lab.curation import views

app_name = "curation"
urlpatterns = [
    path("", views.index, name="index"),
    path("projects/new/", views.project_new, name="project_new"),
    path("p/<slug:slug>/", views.project_detail, name="project"),
    path("p/<slug:slug>/settings/", views.project_settings, name="project_settings"),
    path("p/<slug:slug>/annotators/", views.project_annotators, name="project_annotators"),
    path("p/<slug:slug>/import/", views.import_new, name="import_new"),
    path("p/<slug:slug>/examples/", views.example_list, name="examples"),
    path("p/<slug:slug>/examples/approve/", views.example_bulk_approve, name="bulk_approve"),
    path("p/<slug:slug>/agreement/", views.agreement, name="agreement"),
    path("p/<slug:slug>/versions/", views.version_list, name="versions"),
    path("p/<slug:slug>/versions/freeze/", views.version_freeze, name="version_freeze"),
    path("imports/<int:job_id>/", views.import_detail, name="import"),
    path("imports/<int:job_id>/progress.json", views.import_progress, name="import_progress"),
    path("imports/<int:job_id>/mapping/", views.import_mapping, name="import_mapping"),
    path("versions/<int:pk>/", views.version_detail, name="version"),
    path("versions/<int:pk>/download/", views.version_download, name="version_download"),
    path("versions/<int:pk>/export/<slug:kind>/", views.version_export, name="version_export"),
    path("queue/", views.queue, name="queue"),
    path("queue/<slug:slug>/next/", views.queue_next, name="queue_next"),
    path("e/<int:pk>/", views.editor, name="editor"),
    path("e/<int:pk>/checks/", views.checks, name="checks"),
    path("e/<int:pk>/history/", views.history, name="history"),
    path("e/<int:pk>/edits/", views.edits, name="edits"),
    path("e/<int:pk>/restore/", views.restore, name="restore"),
    path("e/<int:pk>/review/", views.review, name="review_example"),
    path("e/<int:pk>/next/", views.neighbour, {"direction": "next"}, name="next"),
    path("e/<int:pk>/prev/", views.neighbour, {"direction": "prev"}, name="prev"),
    path("review/", views.review_queue, name="review"),
]
