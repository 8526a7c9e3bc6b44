from django.urls import path

from r1lab.tracking import views

app_name = "tracking"
urlpatterns = [
    path("", views.run_list, name="list"),
]
