from django.urls import path

from r1lab.rollouts import views
from r1lab.rollouts.rs import views as rs_views

app_name = "rollouts"
urlpatterns = [
    path("", views.index, name="index"),
    path("runs/<int:run_id>/", views.run_rollouts, name="run"),
    path("runs/<int:run_id>/steps/<int:step>/", views.step_detail, name="step"),
    path("runs/<int:run_id>/prompt/", views.prompt_history, name="prompt"),
    path("runs/<int:run_id>/lineage/", views.prompt_lineage, name="lineage"),
    path("runs/<int:run_id>/lineage/export/", views.lineage_export, name="lineage_export"),
    path("runs/<int:run_id>/lineage/rebuild/", views.lineage_rebuild, name="lineage_rebuild"),
    path("send/", views.send_to_curation, name="send"),
    path("rs/<int:stage_id>/", rs_views.rs_detail, name="rs"),
    path("rs/<int:stage_id>/load/", rs_views.rs_load, name="rs_load"),
    path("rs/<int:stage_id>/spot-checks/", rs_views.spot_check_new, name="spot_new"),
    path("rs/<int:stage_id>/freeze/", rs_views.rs_freeze, name="rs_freeze"),
    path("spot-checks/<int:pk>/", rs_views.spot_check_detail, name="spot"),
    path("spot-checks/items/<int:item_id>/", rs_views.spot_check_mark, name="spot_mark"),
]
