from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from r1lab import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", include("r1lab.accounts.urls")),
    path("runs/", include("r1lab.pipelines.urls")),
    path("metrics/", include("r1lab.tracking.urls")),
    path("api/v1/", include("r1lab.tracking.api_urls")),
    path("", include("r1lab.tracking.mlflow_urls")),  # /api/2.0/mlflow/…: the MLflow tracking protocol
    path("curation/", include("r1lab.curation.urls")),
    path("rollouts/", include("r1lab.rollouts.urls")),
    path("admin/", admin.site.urls),
]
