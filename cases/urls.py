from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "cases"
urlpatterns = [
    path("", views.home, name="home"),
    path("images/<uuid:image_id>/file", views.image_file, name="image-file"),
    path("predictions/<uuid:prediction_id>/heatmap", views.prediction_heatmap, name="prediction-heatmap"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
