from django.urls import path

from r1lab.pipelines import consumers

websocket_urlpatterns = [
    path("ws/runs/", consumers.RunListConsumer.as_asgi()),
    path("ws/runs/<int:run_id>/", consumers.RunStatusConsumer.as_asgi()),
]
