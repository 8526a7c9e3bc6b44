from django.urls import path

from r1lab.pipelines import views

app_name = "pipelines"
urlpatterns = [
    path("", views.run_list, name="list"),
    path("new/", views.run_new, name="new"),
    path("<int:run_id>/", views.run_detail, name="detail"),
]
