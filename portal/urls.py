from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from . import views

app_name = "portal"
urlpatterns = [
    path("", views.home, name="home"),
    path("patients/", views.patient_list, name="patient-list"),
    path("patients/new", views.patient_create, name="patient-create"),
    path("patients/<uuid:patient_id>/", views.patient_detail, name="patient-detail"),
    path("patients/<uuid:patient_id>/edit", views.patient_edit, name="patient-edit"),
    path("patients/<uuid:patient_id>/upload", views.upload, name="upload"),
    path("images/<uuid:image_id>/", views.image_detail, name="image-detail"),
    path("images/<uuid:image_id>/review", views.image_review, name="image-review"),
    path("images/<uuid:image_id>/status", views.image_status, name="image-status"),
    path("images/<uuid:image_id>/file", views.image_file, name="image-file"),
    path("predictions/<uuid:prediction_id>/heatmap", views.prediction_heatmap, name="prediction-heatmap"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/",
        views.PasswordChangeView.as_view(success_url=reverse_lazy("portal:password-change-done")),
        name="password-change",
    ),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password-change-done",
    ),
]
