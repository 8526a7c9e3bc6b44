from django.urls import path

from r1lab.curation import views

app_name = "curation"
urlpatterns = [
    path("", views.index, name="index"),
    path("queue/", views.queue, name="queue"),
    path("review/", views.review_queue, name="review"),
]
