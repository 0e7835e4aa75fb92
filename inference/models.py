"""Model versions and the predictions they make.

A prediction is a versioned row of its own, never columns on the clinical
record: one per (image, model version), pointing at the exact model file
(by sha256) that produced it.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ModelVersionQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True).first()


class ModelVersion(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50)
    file = models.FileField(upload_to="models/", max_length=255)
    sha256 = models.CharField(max_length=64, editable=False)
    input_size = models.PositiveIntegerField()
    preprocessing = models.CharField(max_length=50)
    threshold = models.FloatField()
    metrics = models.JSONField(default=dict, blank=True)
    # The model's whole model.json, as shipped beside the file.
    metadata = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    registered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_model_name_version"),
            # At most one model is live at any moment, enforced by the database.
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="at_most_one_active_model"),
        ]

    def __str__(self):
        return self.label

    @property
    def label(self):
        return f"{self.name}-{self.version}"


# The one wording of the out-of-distribution warning, wherever it is shown.
OUT_OF_DISTRIBUTION_WARNING = "Unlike the images this model was trained on — interpret with caution."


def heatmap_path(instance, filename):
    # Deterministic: a retried worker overwrites its own earlier attempt
    # instead of leaving an orphan file beside a suffixed new one.
    return f"heatmaps/{instance.id}.png"


class PredictionQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status=Prediction.Status.PENDING)

    def stale(self, *, older_than):
        """Pending or running rows whose work was lost (message or worker gone)."""
        cutoff = timezone.now() - older_than
        return self.filter(
            Q(status=Prediction.Status.PENDING, queued_at__lt=cutoff)
            | Q(status=Prediction.Status.RUNNING, started_at__lt=cutoff)
        )


class Prediction(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Label(models.TextChoices):
        BENIGN = "benign", "Benign"
        MALIGNANT = "malignant", "Malignant"
        UNCERTAIN = "uncertain", "Uncertain — needs specialist review"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    image = models.ForeignKey("cases.LesionImage", on_delete=models.PROTECT, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    probability_malignant = models.FloatField(null=True, blank=True)
    label = models.CharField(max_length=10, choices=Label.choices, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    preprocess_ms = models.FloatField(null=True, blank=True)
    inference_ms = models.FloatField(null=True, blank=True)
    # Null for models without an out-of-distribution output.
    ood_distance = models.FloatField(null=True, blank=True)
    out_of_distribution = models.BooleanField(null=True, blank=True)
    # Grad-CAM overlay (RGBA PNG); private storage, served only by a
    # permission-checked view. Blank when it could not be computed.
    heatmap = models.FileField(upload_to=heatmap_path, max_length=255, blank=True)
    heatmap_ms = models.FloatField(null=True, blank=True)

    objects = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-queued_at"]
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="one_prediction_per_image_and_model"),
        ]
        indexes = [models.Index(fields=["status", "queued_at"])]

    def __str__(self):
        return f"{self.get_status_display()} prediction {self.id}"
