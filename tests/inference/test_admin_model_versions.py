"""The model-version admin: upload, read-only details, the switches, and who may use them."""

import io
import re

import pytest
from django.urls import reverse

from core.models import AuditEvent
from inference import registry
from inference.models import ModelActivation, ModelVersion
from tests.conftest import edit_metadata, png_bytes

from .registry.helpers import make_version, state, with_file, zip_folder

pytestmark = pytest.mark.django_db

# The child-process load check is tested in registry/test_load_check.py; tests here that are about
# something else skip it with the no_load_check fixture (tests/inference/conftest.py).


@pytest.fixture
def versions(db):
    """ "a" active (with metrics), "b" registered, "c" in shadow mode."""
    a = make_version("a", is_active=True)
    a.metrics = {"roc_auc": {"mean": 0.9667, "sd": 0.0028}, "sensitivity": {"mean": 0.9001}, "specificity": 0.9167}
    a.save()
    return {"a": a, "b": make_version("b"), "c": make_version("c", is_shadow=True)}


def url(name, *args):
    return reverse(f"admin:inference_modelversion_{name}", args=args)


def switch_urls(versions):
    return {
        "activate": url("activate", versions["b"].pk),
        "start_shadow": url("start_shadow", versions["b"].pk),
        "stop_shadow": url("stop_shadow"),
        "rollback": url("rollback"),
    }


class TestWhoMayDoWhat:
    @pytest.mark.parametrize("role", ["superuser", "ml_admin", "clinic_admin", "plain_staff"])
    def test_every_staff_role_sees_the_list_and_the_details(self, client, request, role, versions):
        client.force_login(request.getfixturevalue(role))
        listing = client.get(url("changelist"))
        assert listing.status_code == 200
        content = listing.content.decode()
        assert 'model-badge model-active">active' in content and 'model-badge model-shadow">shadow' in content
        assert "0.967" in content and "0.900" in content and "0.917" in content  # AUC, sensitivity, specificity
        assert versions["a"].sha256[:12] in content
        assert client.get(url("change", versions["a"].pk)).status_code == 200
        assert client.get(reverse("admin:inference_modelactivation_changelist")).status_code == 200

    @pytest.mark.parametrize("role", ["clinic_admin", "plain_staff"])
    def test_staff_who_are_not_ml_admins_see_no_buttons_and_their_posts_are_403(
        self, client, request, role, versions, model_dir
    ):
        client.force_login(request.getfixturevalue(role))
        for page in (url("changelist"), url("change", versions["b"].pk), url("change", versions["c"].pk)):
            content = client.get(page).content.decode()
            assert "Upload a model version" not in content
            for label in ("Activate</a>", "Start shadow mode</a>", "Stop shadow mode</a>", "Roll back"):
                assert label not in content
        for target in switch_urls(versions).values():
            assert client.get(target).status_code == 403
            assert client.post(target).status_code == 403
        assert client.get(url("add")).status_code == 403
        upload = io.BytesIO(zip_folder(model_dir))
        upload.name = "model.zip"
        assert client.post(url("add"), {"archive": upload}).status_code == 403
        assert state() == ("a", "c") and ModelVersion.objects.count() == 3
        assert not ModelActivation.objects.exists() and not AuditEvent.objects.exists()

    def test_a_clinician_who_is_not_staff_is_sent_to_the_admin_login(self, client, owner, versions):
        client.force_login(owner)
        for target in [url("changelist"), url("add"), *switch_urls(versions).values()]:
            response = client.post(target)
            assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
        assert state() == ("a", "c")

    @pytest.mark.parametrize("role", ["superuser", "ml_admin"])
    def test_ml_admins_see_the_upload_link_and_the_buttons(self, client, request, role, versions):
        client.force_login(request.getfixturevalue(role))
        assert "Upload a model version" in client.get(url("changelist")).content.decode()
        content = client.get(url("change", versions["b"].pk)).content.decode()
        assert url("activate", versions["b"].pk) in content and url("start_shadow", versions["b"].pk) in content
        content = client.get(url("change", versions["c"].pk)).content.decode()
        assert url("stop_shadow") in content

    def test_nobody_edits_or_deletes_a_registered_version(self, client, superuser, versions):
        client.force_login(superuser)
        a = versions["a"]
        response = client.post(url("change", a.pk), {"name": "renamed", "threshold": "0.9"})
        assert response.status_code == 403
        assert client.post(url("delete", a.pk), {"post": "yes"}).status_code == 403
        a.refresh_from_db()
        assert (a.name, a.threshold) == ("model", 0.5)

    def test_activations_are_read_only_history(self, client, superuser, versions):
        registry.activate_model_version(versions["b"], user=superuser)
        row = ModelActivation.objects.get()
        client.force_login(superuser)
        assert client.get(reverse("admin:inference_modelactivation_change", args=[row.pk])).status_code == 200
        assert client.get(reverse("admin:inference_modelactivation_add")).status_code == 403
        assert client.post(reverse("admin:inference_modelactivation_delete", args=[row.pk])).status_code == 403


class TestDetails:
    @pytest.fixture
    def registered(self, model_copy, ml_admin, no_load_check):
        (model_copy / "MODEL_CARD.md").write_text("# Card\n\nIntended use: <script>alert('x')</script> & more\n")
        edit_metadata(model_copy, version="card")
        version, _ = registry.register_model_version(model_dir=model_copy, user=ml_admin, activate=True)
        return version

    def test_the_change_page_shows_metrics_card_plots_and_history(self, client, plain_staff, registered):
        client.force_login(plain_staff)
        content = client.get(url("change", registered.pk)).content.decode()
        auc = registered.metadata["metrics"]["roc_auc"]
        assert f"{auc['mean']:.3f} ± {auc['sd']:.3f}" in content  # AUC from model.json
        assert "balanced_accuracy" in content
        assert "Intended use: &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in content
        assert "<script>alert" not in content
        assert url("plot", registered.pk, "roc_curve") in content
        assert url("plot", registered.pk, "reliability_diagram") in content
        assert '<table id="activation-history">' in content and "ml-admin" in content
        # Stored files are named, never linked: a storage URL would bypass the staff check.
        assert registered.file.name in content
        assert not re.search(r'href="[^"]*models/', content)

    def test_the_plots_are_served_to_staff_only(self, client, plain_staff, owner, registered, model_copy):
        plot = url("plot", registered.pk, "roc_curve")
        client.force_login(plain_staff)
        response = client.get(plot)
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert b"".join(response.streaming_content) == (model_copy / "roc_curve.png").read_bytes()
        assert client.get(url("plot", registered.pk, "model")).status_code == 404
        client.force_login(owner)
        assert client.get(plot).status_code == 302
        client.logout()
        assert client.get(plot).status_code == 302

    def test_a_version_without_plots_says_so(self, client, plain_staff, versions):
        client.force_login(plain_staff)
        content = client.get(url("change", versions["b"].pk)).content.decode()
        assert "None were uploaded with this model." in content
        assert client.get(url("plot", versions["b"].pk, "roc_curve")).status_code == 404


def post_archive(client, data, *, activate=False, name="model.zip"):
    upload = io.BytesIO(data)
    upload.name = name
    return client.post(url("add"), {"archive": upload, "activate": "on" if activate else ""})


class TestUpload:
    def test_an_ml_admin_uploads_and_activates_a_model(self, client, ml_admin, active_model, model_copy, no_load_check):
        edit_metadata(model_copy, version="next")
        (model_copy / "roc_curve.png").write_bytes(png_bytes())
        client.force_login(ml_admin)
        assert client.get(url("add")).status_code == 200
        response = post_archive(client, zip_folder(model_copy), activate=True)
        version = ModelVersion.objects.get(version="next")
        assert response.status_code == 302 and response["Location"] == url("change", version.pk)
        assert version.is_active and version.registered_by == ml_admin
        with version.roc_curve.open("rb") as fh:
            assert fh.read() == png_bytes()
        assert AuditEvent.objects.filter(
            action="created", model="inference.modelversion", object_id=str(version.pk), user=ml_admin
        ).exists()
        activated = AuditEvent.objects.get(action="action", object_id=str(version.pk))
        assert activated.description.startswith("Activated mobilenet-v2-melanoma-next on upload")
        # The fixture's activation of active_model, then this one's.
        assert [(row.model_version, row.previous) for row in ModelActivation.objects.order_by("at", "id")] == [
            (active_model, None),
            (version, active_model),
        ]

    @pytest.mark.parametrize(
        "make_upload, message",
        [
            (lambda d: b"not a zip at all", "not a zip archive, or it is damaged"),
            (lambda d: zip_folder(d)[:5000], "not a zip archive, or it is damaged"),
            (lambda d: zip_folder(d, extra={"model/model.json": b"{}"}, top="other"), "no model.json"),
            (lambda d: with_file(d, "model.keras", b"text renamed .keras"), "model.keras is not a Keras model"),
        ],
        ids=["not-a-zip", "truncated", "two-top-folders", "text-as-keras"],
    )
    def test_a_bad_upload_is_a_form_error_and_the_active_model_stays(
        self, client, ml_admin, active_model, model_copy, make_upload, message
    ):
        edit_metadata(model_copy, version="bad")
        client.force_login(ml_admin)
        response = post_archive(client, make_upload(model_copy), activate=True)
        assert response.status_code == 200
        assert message in response.content.decode()
        assert ModelVersion.objects.active() == active_model and ModelVersion.objects.count() == 1
        assert not AuditEvent.objects.exists()

    def test_a_post_without_a_file_is_a_form_error(self, client, ml_admin):
        client.force_login(ml_admin)
        response = client.post(url("add"), {})
        assert response.status_code == 200 and "This field is required." in response.content.decode()


class TestSwitches:
    @pytest.fixture
    def signed_in(self, client, ml_admin):
        client.force_login(ml_admin)
        return client

    def test_activating_asks_first_then_switches_and_is_audited(self, signed_in, ml_admin, versions):
        b = versions["b"]
        confirm = signed_in.get(url("activate", b.pk))
        assert confirm.status_code == 200 and 'type="submit" value="Activate"' in confirm.content.decode()
        assert state() == ("a", "c")  # a GET changes nothing
        response = signed_in.post(url("activate", b.pk))
        assert response.status_code == 302 and response["Location"] == url("change", b.pk)
        assert state() == ("b", "c")
        row = ModelActivation.objects.get()
        assert (row.action, row.model_version, row.previous, row.by) == ("activated", b, versions["a"], ml_admin)
        event = AuditEvent.objects.get()
        assert (event.action, event.model, event.object_id, event.user) == (
            "action",
            "inference.modelversion",
            str(b.pk),
            ml_admin,
        )
        assert event.changes == {"is_active": [False, True]} and "Activated model-b" in event.description

    def test_promoting_the_shadow_model(self, signed_in, versions):
        signed_in.post(url("activate", versions["c"].pk))
        assert state() == ("c", None)

    def test_shadow_mode_starts_and_stops(self, signed_in, versions):
        signed_in.post(url("start_shadow", versions["b"].pk))
        assert state() == ("a", "b")
        signed_in.post(url("stop_shadow"))
        assert state() == ("a", None)
        assert [row.action for row in ModelActivation.objects.order_by("id")] == ["shadow_started", "shadow_stopped"]
        assert [event.description.split(" of ")[0] for event in AuditEvent.objects.order_by("id")] == [
            "Started shadow mode",
            "Stopped shadow mode",
        ]

    def test_rolling_back(self, signed_in, ml_admin, versions):
        registry.activate_model_version(versions["b"], user=ml_admin)
        assert url("rollback") in signed_in.get(url("change", versions["b"].pk)).content.decode()
        assert "model-a" in signed_in.get(url("rollback")).content.decode()  # says what comes back
        response = signed_in.post(url("rollback"))
        assert response.status_code == 302 and response["Location"] == url("change", versions["a"].pk)
        assert state() == ("a", "c")
        assert ModelActivation.objects.first().action == "rolled_back"
        assert AuditEvent.objects.get().description == "Rolled back from model-b to model-a"

    @pytest.mark.parametrize(
        "target, message",
        [
            (lambda v: url("rollback"), "no earlier active model to roll back to"),
            (lambda v: url("start_shadow", v["a"].pk), "cannot also be the shadow model"),
            (lambda v: url("activate", v["a"].pk), "already the active model"),
        ],
        ids=["nothing-to-roll-back", "active-as-shadow", "already-active"],
    )
    def test_a_refused_switch_is_a_message_not_an_error_page(self, signed_in, versions, target, message):
        response = signed_in.post(target(versions), follow=True)
        assert response.status_code == 200
        assert message in response.content.decode()
        assert state() == ("a", "c")
        assert not ModelActivation.objects.exists() and not AuditEvent.objects.exists()

    def test_stopping_shadow_mode_without_a_shadow_model(self, signed_in, versions):
        signed_in.post(url("stop_shadow"))
        response = signed_in.post(url("stop_shadow"), follow=True)
        assert "No model is in shadow mode." in response.content.decode()

    def test_an_unknown_version_is_404(self, signed_in, versions):
        assert signed_in.post(url("activate", "6f9619ff-8b86-d011-b42d-00cf4fc964ff")).status_code == 404
