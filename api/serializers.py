"""What the API reads and writes. Writes are validated here for shape only;
the rules live in cases.services, which the views call."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cases import permissions
from cases.models import (
    DEVICE_NAME_LENGTH,
    PATIENT_DEMOGRAPHICS,
    Clinic,
    Lesion,
    LesionImage,
    Patient,
    Review,
    validate_device_name,
)
from core import quality
from inference.models import Prediction
from inference.runtime import IMAGE_QUALITY, UNCERTAIN_BAND
from inference.selectors import latest_clinical_prediction

from .models import DeviceToken


def _json_type_error(field, value):
    """The JSON type ``field`` wants, if ``value`` is not of it (DRF would coerce 12 to "12")."""
    if value is None:
        return None  # allow_null is DRF's to check
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "a boolean"
    if isinstance(field, serializers.ChoiceField) and field.choices:
        if all(isinstance(choice, int) for choice in field.choices):
            return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
        return None if isinstance(value, str) else "a string"
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(field, serializers.FloatField):
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "a number"
    if isinstance(field, serializers.CharField | serializers.DateField | serializers.DateTimeField) or isinstance(
        field, serializers.UUIDField | serializers.RelatedField
    ):
        return None if isinstance(value, str) else "a string"
    return None


class StrictMixin:
    """Unknown fields are an error (400), not silently ignored: a typo in an
    app must not drop a clinical value on the floor. In JSON bodies each
    value must have its field's JSON type (no 12 for "12"); in forms each
    field comes once (two ``file`` parts would otherwise keep the last)."""

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            writable = {name: field for name, field in self.fields.items() if not field.read_only}
            errors = {name: ["Unknown field."] for name in sorted(set(data.keys()) - set(writable))}
            if hasattr(data, "getlist"):  # a form: QueryDict keeps every repeated part
                errors.update({name: ["Sent more than once."] for name in data.keys() if len(data.getlist(name)) > 1})
            if isinstance(data, dict) and not hasattr(data, "getlist"):  # JSON, not a form
                for name, field in writable.items():
                    if name in data and (wanted := _json_type_error(field, data[name])):
                        errors[name] = [f"Must be {wanted}."]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class ClinicSerializer(serializers.ModelSerializer):
    class Meta:
        model = Clinic
        fields = ["id", "name"]


class PatientSerializer(StrictMixin, serializers.ModelSerializer):
    clinic = serializers.PrimaryKeyRelatedField(
        queryset=Clinic.objects.none(),
        required=False,
        help_text="One of your clinics (GET /api/v1/clinics). May be left out if you belong to exactly one.",
    )

    class Meta:
        model = Patient
        fields = [
            "id",
            "clinic",
            *PATIENT_DEMOGRAPHICS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []  # uniqueness is checked by cases.services.create_patient

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            # Another clinic's id is answered exactly like one that does not exist.
            self.fields["clinic"].queryset = permissions.clinics_of(request.user)

    def validate(self, attrs):
        if "clinic" not in attrs:
            clinics = list(permissions.clinics_of(self.context["request"].user)[:2])
            if len(clinics) != 1:
                raise serializers.ValidationError({"clinic": ["Required: you belong to more than one clinic."]})
            attrs["clinic"] = clinics[0]
        return attrs


class LesionSerializer(StrictMixin, serializers.ModelSerializer):
    class Meta:
        model = Lesion
        fields = ["id", "patient", "anatomical_site", "description", "created_at"]
        read_only_fields = ["id", "patient", "created_at"]


UNCERTAIN_REASONS = [
    (UNCERTAIN_BAND, "The probability is inside the model's uncertain band"),
    (IMAGE_QUALITY, "The image-quality gate found the photo unfit"),
]


class PredictionSerializer(serializers.ModelSerializer):
    model_version = serializers.CharField(source="model_version.label", read_only=True)
    label = serializers.SerializerMethodField(help_text="null until the prediction has succeeded.")
    uncertain = serializers.SerializerMethodField(help_text="True when the model abstains: a specialist should look.")
    heatmap_url = serializers.SerializerMethodField(help_text="Where the saliency heatmap is, once there is one.")
    uncertain_reasons = serializers.SerializerMethodField(
        help_text="Why the label is uncertain: the model's own band, or the image-quality gate "
        "(the model's label overruled); empty otherwise."
    )

    class Meta:
        model = Prediction
        fields = [
            "id",
            "status",
            "label",
            "probability_malignant",
            "confidence",
            "uncertain",
            "model_version",
            "error",
            "queued_at",
            "finished_at",
            "heatmap_url",
            "ood_distance",
            "out_of_distribution",
            "uncertain_reasons",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=UNCERTAIN_REASONS)))
    def get_uncertain_reasons(self, prediction):
        return prediction.uncertain_reasons

    @extend_schema_field(serializers.ChoiceField(choices=Prediction.Label.choices, allow_null=True))
    def get_label(self, prediction):
        return prediction.label or None

    def get_uncertain(self, prediction) -> bool:
        return prediction.label == Prediction.Label.UNCERTAIN or bool(prediction.out_of_distribution)

    def get_heatmap_url(self, prediction) -> str | None:
        if not prediction.heatmap:
            return None
        return reverse("api:prediction-heatmap", args=[prediction.pk])


class ImageQualitySerializer(serializers.Serializer):
    retake_recommended = serializers.BooleanField(help_text="The intake gate found the photo unfit to score.")
    message = serializers.CharField(
        source="quality_message", help_text='"Image quality: retake recommended — too blurred"; empty if it passed.'
    )
    findings = serializers.ListField(
        source="quality_findings",
        child=serializers.ChoiceField(choices=list(quality.REASONS.items())),
        help_text="What is wrong with the photo (docs/image-quality.md).",
    )
    measures = serializers.DictField(
        source="quality_measures",
        child=serializers.FloatField(),
        help_text="The gate's measurements; empty for images stored before it existed.",
    )


class MatchedImageSerializer(serializers.ModelSerializer):
    """An earlier image of the same clinic that is nearly the same picture."""

    patient = serializers.UUIDField(source="lesion.patient_id", read_only=True)

    class Meta:
        model = LesionImage
        fields = ["id", "lesion", "patient", "uploaded_at"]
        read_only_fields = fields


class ImageSerializer(serializers.ModelSerializer):
    patient = serializers.UUIDField(source="lesion.patient_id", read_only=True)
    uploaded_by = serializers.CharField(source="uploaded_by.get_username", read_only=True)
    file_url = serializers.SerializerMethodField(help_text="The image bytes (authenticated, never public).")
    prediction = serializers.SerializerMethodField(help_text="The newest prediction; null until one is requested.")
    quality = ImageQualitySerializer(source="*", read_only=True, help_text="The intake image-quality gate.")
    duplicate_of = MatchedImageSerializer(
        read_only=True, allow_null=True, help_text="An earlier image of this patient that is nearly the same picture."
    )
    duplicate_message = serializers.CharField(read_only=True)
    possible_wrong_patient_of = MatchedImageSerializer(
        read_only=True,
        allow_null=True,
        help_text="An image of another patient of the same clinic that is nearly the same picture: "
        "this upload may be filed under the wrong patient.",
    )
    wrong_patient_message = serializers.CharField(read_only=True)

    class Meta:
        model = LesionImage
        fields = [
            "id",
            "lesion",
            "patient",
            "modality",
            "captured_at",
            "uploaded_at",
            "uploaded_by",
            "image_format",
            "width",
            "height",
            "byte_size",
            "sha256",
            "device_make",
            "device_model",
            "file_url",
            "prediction",
            "quality",
            "duplicate_of",
            "duplicate_message",
            "possible_wrong_patient_of",
            "wrong_patient_message",
        ]
        read_only_fields = fields

    def get_file_url(self, image) -> str:
        return reverse("api:image-file", args=[image.pk])

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_prediction(self, image):
        prediction = latest_clinical_prediction(image)
        return PredictionSerializer(prediction).data if prediction else None


class ImageUploadSerializer(StrictMixin, serializers.Serializer):
    file = serializers.FileField(
        help_text="A JPEG or PNG image, or a single-frame DICOM file of this lesion's patient.", allow_empty_file=False
    )
    modality = serializers.ChoiceField(
        choices=LesionImage.Modality.choices,
        default=LesionImage.Modality.DERMOSCOPIC,
        help_text="How the photo was taken; the quality gate checks that it looks it.",
    )
    captured_at = serializers.DateTimeField(required=False, help_text="When the photo was taken; default now.")
    device_make = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=DEVICE_NAME_LENGTH,
        validators=[validate_device_name],
        help_text="The acquisition device's maker, e.g. 'DermLite'. Given with or without device_model, "
        "it replaces what the file's EXIF says.",
    )
    device_model = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=DEVICE_NAME_LENGTH,
        validators=[validate_device_name],
        help_text="The acquisition device (the dermatoscope or camera), e.g. 'DL5'. Omitted or blank: "
        "the make and model in the file's EXIF, if any. A clinic's device-specific model is chosen by it.",
    )
    client_id = serializers.UUIDField(
        required=False,
        help_text="A UUID the app generates per photo: acts as the Idempotency-Key when that header is absent.",
    )


class ReviewSerializer(StrictMixin, serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.get_username", read_only=True)

    class Meta:
        model = Review
        fields = [
            "id",
            "image",
            "prediction",
            "reviewer",
            "created_at",
            "verdict",
            "final_diagnosis",
            "biopsy_requested",
            "histopathology_result",
            "notes",
        ]
        read_only_fields = ["id", "image", "prediction", "reviewer", "created_at"]


class TokenCreateSerializer(StrictMixin, serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, style={"input_type": "password"}, trim_whitespace=False)
    device_name = serializers.CharField(max_length=100, help_text="Shown in the token list, e.g. 'Ward 3 iPad'.")
    otp = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=16,
        help_text="Reserved for a one-time code once two-factor sign-in is enabled; not checked today.",
    )


class TokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeviceToken
        fields = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at"]
        read_only_fields = fields


class NewTokenSerializer(TokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The secret: shown only now. Send 'Bearer <token>'.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]
        read_only_fields = fields
