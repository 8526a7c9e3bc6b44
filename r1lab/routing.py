"""WebSocket routes: each app that has sockets keeps its own in <app>/routing.py."""
from r1lab.pipelines.routing import websocket_urlpatterns as pipelines_ws
from r1lab.tracking.routing import websocket_urlpatterns as tracking_ws

websocket_urlpatterns = [*pipelines_ws, *tracking_ws]
