"""ASGI entry point: HTTP (Django, static files) and WebSocket (Channels consumers)."""
import os

import django

import r1lab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1lab.settings")
# The web server pools its database connections (see R1LAB_DB_POOL in r1lab/settings.py).
r1lab.WEB_SERVER = True
# Django must be set up before consumers (which import models) are imported.
django.setup(set_prefix=False)

from r1lab.asgi_handler import SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from r1lab.bodylimit import BodyLimitMiddleware, install_daphne_guard  # noqa: E402
from r1lab.routing import websocket_urlpatterns  # noqa: E402

# Request bodies over the limit for their path are refused while they arrive, before daphne
# or Django buffers them (r1lab/bodylimit.py).
install_daphne_guard()

application = ProtocolTypeRouter(
    {
        # Static files are served by the app itself so that `make demo` is one process and
        # works offline; a production deployment may put a proxy in front for /static/.
        "http": BodyLimitMiddleware(ASGIStaticFilesHandler(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
