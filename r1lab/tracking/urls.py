from django.urls import path

from r1lab.tracking import views

app_name = "tracking"
urlpatterns = [
    path("", views.run_list, name="list"),
    path("compare/", views.compare, name="compare"),
    path("notifications/", views.notifications, name="notifications"),
    path("notifications/settings/", views.alert_settings, name="alert_settings"),
    path("runs/<int:run_id>/", views.run_detail, name="run"),
    path("runs/<int:run_id>/data.json", views.run_data, name="run_data"),
    path("runs/<int:run_id>/keys.json", views.run_keys, name="run_keys"),
    path("runs/<int:run_id>/signals.json", views.run_signals, name="run_signals"),
    path("runs/<int:run_id>/points.csv", views.run_csv, name="run_csv"),
    path("runs/<int:run_id>/comments/", views.comment_add, name="comment_add"),
    path("runs/<int:run_id>/notes/", views.notes_update, name="notes_update"),
]
