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
        """The global active model (site models are chosen per image: ``for_site``)."""
        return self.filter(is_active=True, clinic__isnull=True).first()

    def shadow(self):
        """The global shadow model."""
        return self.filter(is_shadow=True, clinic__isnull=True).first()

    def in_scope(self, clinic_id, device_model=""):
        """Versions of exactly one scope: global (``clinic_id`` None), a clinic, or a clinic's device."""
        if clinic_id is None:
            return self.filter(clinic__isnull=True)
        return self.filter(clinic_id=clinic_id, device_model=device_model or "")

    def for_site(self, clinic_id, device_model=""):
        """(active, shadow) for an image of ``clinic_id`` taken with ``device_model``.

        The most specific scope wins, separately for each: the clinic's model
        for that device, else the clinic's model for every device, else the
        global one. Either may be None.
        """
        from django.db.models import Case, IntegerField, Value, When

        scopes = Q(clinic__isnull=True)
        if clinic_id is not None:
            scopes |= Q(clinic_id=clinic_id, device_model="")
            if device_model:
                scopes |= Q(clinic_id=clinic_id, device_model=device_model)
        live = self.filter(scopes).filter(Q(is_active=True) | Q(is_shadow=True))
        rank = Case(
            When(clinic__isnull=True, then=Value(2)),
            When(device_model="", then=Value(1)),
            default=Value(0),
            output_field=IntegerField(),
        )
        # Every upload asks this: leave out the ~20 KB of JSON and text that nobody here reads.
        ordered = list(
            live.defer("metrics", "metadata", "evaluation", "model_card")
            .annotate(scope_rank=rank)
            .order_by("scope_rank")
        )
        active = next((v for v in ordered if v.is_active), None)
        shadow = next((v for v in ordered if v.is_shadow), None)
        return active, shadow


def model_artifact_path(instance, filename):
    # Model files and their evaluation plots sit in private storage, grouped
    # by version; nothing under it has a public URL.
    return f"models/{instance.name}-{instance.version}/{filename}"


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
    # The same network exported to ONNX, which the worker runs when present
    # (faster to start and to run than TensorFlow); blank for Keras-only models.
    onnx_file = models.FileField(upload_to=model_artifact_path, max_length=255, blank=True)
    onnx_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    # What the training run wrote beside the model, shown in the admin.
    model_card = models.TextField(blank=True)
    evaluation = models.JSONField(default=dict, blank=True)
    roc_curve = models.FileField(upload_to=model_artifact_path, max_length=255, blank=True)
    reliability_diagram = models.FileField(upload_to=model_artifact_path, max_length=255, blank=True)
    is_active = models.BooleanField(default=False)
    # A shadow model predicts every new image as well, but its predictions
    # are never shown to clinicians: admins compare it with the active one
    # before promoting it.
    is_shadow = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    registered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    # Scope: blank clinic = the global model; a clinic = that site's model
    # (``python -m training adapt``), optionally for one acquisition device
    # only. Fixed at registration. Each scope has its own active and shadow.
    clinic = models.ForeignKey(
        "cases.Clinic", on_delete=models.PROTECT, null=True, blank=True, related_name="model_versions"
    )
    device_model = models.CharField(max_length=100, blank=True, default="")

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_model_name_version"),
            # At most one model is live per scope at any moment, enforced by the
            # database: one global, and one per (clinic, device model).
            models.UniqueConstraint(
                fields=["is_active"],
                condition=Q(is_active=True, clinic__isnull=True),
                name="at_most_one_active_global_model",
            ),
            models.UniqueConstraint(
                fields=["is_shadow"],
                condition=Q(is_shadow=True, clinic__isnull=True),
                name="at_most_one_shadow_global_model",
            ),
            models.UniqueConstraint(
                fields=["clinic", "device_model"],
                condition=Q(is_active=True, clinic__isnull=False),
                name="at_most_one_active_model_per_site",
            ),
            models.UniqueConstraint(
                fields=["clinic", "device_model"],
                condition=Q(is_shadow=True, clinic__isnull=False),
                name="at_most_one_shadow_model_per_site",
            ),
            models.CheckConstraint(
                condition=Q(clinic__isnull=False) | Q(device_model=""), name="device_scope_needs_a_clinic"
            ),
            models.CheckConstraint(condition=~Q(is_active=True, is_shadow=True), name="active_model_is_not_shadow"),
        ]
        permissions = [
            ("register_modelversion", "Can register model versions"),
            ("activate_modelversion", "Can activate, shadow and roll back model versions"),
        ]

    def __str__(self):
        return self.label

    @property
    def label(self):
        return f"{self.name}-{self.version}"

    @property
    def is_site_model(self) -> bool:
        return self.clinic_id is not None

    @property
    def scope_label(self) -> str:
        if self.clinic_id is None:
            return "global"
        return f"{self.clinic}" + (f" / {self.device_model}" if self.device_model else "")


class ModelActivation(models.Model):
    """Append-only history of which model was live (or shadow), who switched it and when.

    Rollback reads it: the version active before the current one is the
    previous ``ACTIVATED`` row's.
    """

    class Action(models.TextChoices):
        ACTIVATED = "activated", "Activated"
        ROLLED_BACK = "rolled_back", "Rolled back to"
        SHADOW_STARTED = "shadow_started", "Shadow mode started"
        SHADOW_STOPPED = "shadow_stopped", "Shadow mode stopped"
        SITE_WITHDRAWN = "site_withdrawn", "Site model withdrawn (back to the global model)"

    id = models.BigAutoField(primary_key=True)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="activations")
    action = models.CharField(max_length=20, choices=Action.choices)
    # The version that was active (or shadow) just before this change.
    previous = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.get_action_display()} {self.model_version} at {self.at:%Y-%m-%d %H:%M}"


# The one wording of the out-of-distribution warning, wherever it is shown.
OUT_OF_DISTRIBUTION_WARNING = "Unlike the images this model was trained on — interpret with caution."


def heatmap_path(instance, filename):
    # A fresh name for every run (the prediction's id, then a random part):
    # two runs of one prediction (a duplicate delivery, a run that lost its
    # lease) never write the same file, and the row is switched to the new
    # file in the same UPDATE that stores the result. The loser deletes only
    # its own file; no run ever deletes a name another run may be saving.
    return f"heatmaps/{instance.id}-{uuid.uuid4().hex[:12]}.png"


class PredictionQuerySet(models.QuerySet):
    def clinical(self):
        """Predictions clinicians may see: every one except a shadow model's."""
        return self.filter(is_shadow=False)

    def pending(self):
        return self.filter(status=Prediction.Status.PENDING)

    def expired_leases(self, *, now=None):
        """Running rows whose run stopped renewing its lease: killed, hung past its time limit, or lost."""
        return self.filter(status=Prediction.Status.RUNNING, lease_expires_at__lt=now or timezone.now())

    def never_sent(self, *, grace):
        """Pending rows whose message the broker never accepted (``sent_at`` is null)."""
        return self.filter(status=Prediction.Status.PENDING, sent_at__isnull=True, queued_at__lt=timezone.now() - grace)

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
    # Why the label is uncertain: "uncertain_band" (the model's own band),
    # "image_quality" (the intake gate found the photo unfit; the model's
    # label is overruled). Empty for a benign or malignant label.
    uncertain_reasons = models.JSONField(default=list, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Real starts only: a duplicate delivery that finds the row leased by a
    # live run, or the row already finished, is not an attempt.
    attempts = models.PositiveSmallIntegerField(default=0)
    queued_at = models.DateTimeField(default=timezone.now)
    # When the broker last accepted this row's message; null while it has
    # not (the publish failed, or the process died between commit and
    # publish). The sweeper sends a pending row with no sent_at again: its
    # message provably never reached the broker (inference/sweeper.py).
    sent_at = models.DateTimeField(null=True, blank=True)
    # The lease of the run working on a running row: its id and when it
    # ends. The run renews it while it works (inference/leases.py); once it
    # has expired the run is presumed dead and the sweeper queues the row
    # again. A second delivery that finds a live lease does nothing.
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
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
    # Made by a shadow model: kept for comparison, never shown in the portal
    # or the API. Fixed when the row is created.
    is_shadow = models.BooleanField(default=False)
    # An admin asked for a specialist to look at this case.
    flagged_for_specialist = models.BooleanField(default=False)
    flagged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    flagged_at = models.DateTimeField(null=True, blank=True)

    objects = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-queued_at"]
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="one_prediction_per_image_and_model"),
        ]
        indexes = [
            models.Index(fields=["status", "queued_at"]),
            # /metrics: predictions finished in the last minutes (latency histogram, failures).
            models.Index(fields=["status", "finished_at"], name="prediction_status_finished"),
            models.Index(fields=["model_version", "is_shadow"]),
            # The sweeper's two queries, every few seconds: partial, so tiny.
            models.Index(fields=["lease_expires_at"], condition=Q(status="running"), name="prediction_running_lease"),
            models.Index(
                fields=["queued_at"], condition=Q(status="pending", sent_at__isnull=True), name="prediction_unsent"
            ),
        ]

    def __str__(self):
        return f"{self.get_status_display()} prediction {self.id}"


class SiteAdaptationJob(models.Model):
    """One run of ``training adapt`` for a clinic (optionally one device) on the ``training`` queue.

    ``inference.site_jobs``: the cases are the clinic's biopsy-confirmed
    images (``data_dir`` blank), or a folder on the training worker.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    OPEN = (Status.QUEUED, Status.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    clinic = models.ForeignKey("cases.Clinic", on_delete=models.PROTECT, related_name="site_adaptation_jobs")
    # Blank: every device of the clinic; else only its images from this device,
    # and the result is registered for that device only.
    device_model = models.CharField(max_length=100, blank=True, default="")
    data_dir = models.CharField(max_length=500, blank=True)
    out_dir = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.TextField(blank=True)  # the run's progress lines, appended as they come
    error = models.TextField(blank=True)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A second request while one runs would only redo the same work:
            # one open job per site (clinic and device), held by the database.
            models.UniqueConstraint(
                fields=["clinic", "device_model"],
                condition=Q(status__in=["queued", "running"]),
                name="one_open_adaptation_job_per_site",
            ),
        ]

    def __str__(self):
        scope = f"{self.clinic}" + (f" / {self.device_model}" if self.device_model else "")
        return f"Site adaptation for {scope} ({self.get_status_display()})"
