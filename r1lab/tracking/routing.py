from django.urls import path

from r1lab.tracking import consumers

websocket_urlpatterns = [
    path("ws/metrics/runs/<int:run_id>/", consumers.RunMetricsConsumer.as_asgi()),
]
