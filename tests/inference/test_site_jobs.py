"""Site adaptation as a job on the ``training`` queue: who may start it, where it is sent,
its progress and failure recorded, and who sees it in the admin."""

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError

from inference import site_jobs
from inference.models import SiteAdaptationJob
from tests import admin_helpers
from tests.factories import ClinicFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    from celery import current_app

    calls = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args=(), **kw: calls.append((name, tuple(args))))
    return calls


def test_the_task_is_routed_to_the_training_queue():
    assert settings.CELERY_TASK_ROUTES[site_jobs.ADAPT_TASK] == {"queue": "training"}


def test_an_ml_admin_queues_a_job_on_commit(clinic, sent, tmp_path, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = site_jobs.request_site_adaptation(clinic=clinic, data_dir=tmp_path, user=admin_helpers.ml_admin())
    assert job.status == "queued"
    assert sent == [(site_jobs.ADAPT_TASK, (str(job.pk),))]


def test_others_may_not(clinic, sent, tmp_path):
    with pytest.raises(PermissionDenied):
        site_jobs.request_site_adaptation(clinic=clinic, data_dir=tmp_path, user=admin_helpers.clinic_admin(clinic))
    assert not SiteAdaptationJob.objects.exists()


def test_a_refused_adaptation_fails_the_job_with_the_reason(clinic, tmp_path, settings):
    settings.VAR_DIR = tmp_path / "var"
    data = tmp_path / "site"
    (data / "benign").mkdir(parents=True)
    job = SiteAdaptationJob.objects.create(clinic=clinic, data_dir=str(data))
    job = site_jobs.run_site_adaptation(job.pk)
    assert job.status == "failed" and "benign/ is empty" in job.error
    assert job.finished_at is not None and job.model_version is None
    assert not (tmp_path / "var" / "site-models" / str(job.pk)).exists()


def test_progress_lines_are_appended(clinic, tmp_path):
    job = SiteAdaptationJob.objects.create(clinic=clinic, data_dir=str(tmp_path))
    say = site_jobs._say(job.pk)
    say("one")
    say("two")
    job.refresh_from_db()
    assert [line.split(" ", 1)[1] for line in job.progress.splitlines()] == ["one", "two"]


def test_jobs_are_seen_by_their_clinic_only(rf, clinic):
    from django.contrib import admin

    from inference.admin.site_jobs import SiteAdaptationJobAdmin

    job = SiteAdaptationJob.objects.create(clinic=clinic, data_dir="/x")
    stranger = UserFactory(username="stranger", is_staff=True)
    MembershipFactory(clinic=ClinicFactory(name="Southside"), user=stranger)
    model_admin = SiteAdaptationJobAdmin(SiteAdaptationJob, admin.site)
    for user, expected in (
        (admin_helpers.plain_staff(clinic), [job]),
        (stranger, []),
        (admin_helpers.ml_admin(), [job]),
    ):
        request = rf.get("/")
        request.user = user
        assert list(model_admin.get_queryset(request)) == expected


# --- the clinic's own cases, and the start button -----------------------------


def confirmed(lesion, uploader, result, n=1, device_model="", first_review=None):
    """``n`` images whose latest review carries ``result`` (and, before it, ``first_review`` if given)."""
    from datetime import timedelta

    from django.utils import timezone

    images = []
    for _ in range(n):
        image = admin_helpers.make_image(lesion, uploader, device_model=device_model)
        if first_review is not None:
            admin_helpers.make_review(image, uploader, histopathology_result=first_review)
        admin_helpers.make_review(
            image, uploader, histopathology_result=result, created_at=timezone.now() + timedelta(minutes=1)
        )
        images.append(image)
    return images


@pytest.fixture
def small_minimum(monkeypatch):
    """Two melanomas and three benign lesions are "enough" (the real 20 + 40 is checked once, below)."""
    monkeypatch.setattr(site_jobs, "minimum_cases", lambda: (2, 3))


@pytest.fixture
def enough(owner, lesion):
    confirmed(lesion, owner, "invasive_melanoma", 1)
    confirmed(lesion, owner, "melanoma_in_situ", 2, device_model="DL5")
    confirmed(lesion, owner, "benign", 3, device_model="DL5")


class TestLocalCases:
    def test_the_latest_review_decides_and_other_results_are_left_out(self, clinic, owner, lesion):
        confirmed(lesion, owner, "benign", 2, first_review="invasive_melanoma")
        confirmed(lesion, owner, "invasive_melanoma", 1, device_model="DL5")
        confirmed(lesion, owner, "other_malignant", 1)
        confirmed(lesion, owner, "non_diagnostic", 1)
        confirmed(lesion, owner, "", 1)
        assert site_jobs.count_local_cases(clinic) == (1, 2)
        assert site_jobs.count_local_cases(clinic, "DL5") == (1, 0)
        assert site_jobs.count_local_cases(ClinicFactory(name="Southside")) == (0, 0)

    def test_the_real_minimum_is_20_melanomas_and_40_benign_lesions(self, clinic, owner, lesion, sent):
        confirmed(lesion, owner, "invasive_melanoma", 19)
        confirmed(lesion, owner, "benign", 40)
        with pytest.raises(ValidationError) as caught:
            site_jobs.request_site_adaptation(clinic=clinic, user=admin_helpers.ml_admin())
        assert caught.value.messages == [
            "Too few local cases for Northside Dermatology: 19 melanomas and 40 benign lesions with a "
            "histopathology result on their latest review; adaptation needs at least 20 and 40."
        ]
        assert not SiteAdaptationJob.objects.exists() and sent == []
        confirmed(lesion, owner, "melanoma_in_situ", 1)
        assert site_jobs.request_site_adaptation(clinic=clinic, user=admin_helpers.ml_admin()).status == "queued"

    def test_the_export_names_files_by_image_id_under_their_label(self, clinic, owner, lesion, tmp_path):
        from django.core.files.base import ContentFile

        [melanoma] = confirmed(lesion, owner, "invasive_melanoma", 1)
        [benign] = confirmed(lesion, owner, "benign", 1, device_model="DL5")
        for image in (melanoma, benign):
            image.image.save("upload", ContentFile(b"bytes of " + str(image.pk).encode()))
        assert site_jobs.export_local_cases(clinic, "", tmp_path) == (1, 1)
        assert (tmp_path / "malignant" / f"{melanoma.pk}.jpg").read_bytes() == b"bytes of " + str(melanoma.pk).encode()
        assert sorted(p.name for p in (tmp_path / "benign").iterdir()) == [f"{benign.pk}.jpg"]


class TestRequest:
    def test_a_site_with_enough_cases_is_queued_and_audited(
        self, clinic, enough, small_minimum, sent, django_capture_on_commit_callbacks
    ):
        from core.models import AuditEvent

        with django_capture_on_commit_callbacks(execute=True):
            job = site_jobs.request_site_adaptation(clinic=clinic, device_model="DL5", user=admin_helpers.ml_admin())
        assert (job.status, job.device_model, job.data_dir) == ("queued", "DL5", "")
        assert sent == [(site_jobs.ADAPT_TASK, (str(job.pk),))]
        event = AuditEvent.objects.get(object_id=str(job.pk))
        assert event.description == "Site adaptation requested for Northside Dermatology / DL5"

    def test_too_few_for_one_device_is_refused(self, clinic, enough, small_minimum, sent):
        with pytest.raises(ValidationError, match="Too few local cases for Northside Dermatology / DL4: 0 melanomas"):
            site_jobs.request_site_adaptation(clinic=clinic, device_model="DL4", user=admin_helpers.ml_admin())
        assert not SiteAdaptationJob.objects.exists()

    def test_a_second_request_for_the_same_site_is_refused_while_one_is_open(self, clinic, enough, small_minimum, sent):
        ml_admin = admin_helpers.ml_admin()
        first = site_jobs.request_site_adaptation(clinic=clinic, user=ml_admin)
        with pytest.raises(ValidationError, match="already queued"):
            site_jobs.request_site_adaptation(clinic=clinic, user=ml_admin)
        # Another device of the same clinic is another site.
        site_jobs.request_site_adaptation(clinic=clinic, device_model="DL5", user=ml_admin)
        SiteAdaptationJob.objects.filter(pk=first.pk).update(status="succeeded")
        site_jobs.request_site_adaptation(clinic=clinic, user=ml_admin)
        assert SiteAdaptationJob.objects.count() == 3

    def test_the_database_holds_one_open_job_per_site(self, clinic):
        from django.db import IntegrityError, transaction

        SiteAdaptationJob.objects.create(clinic=clinic, status="running")
        with pytest.raises(IntegrityError), transaction.atomic():
            SiteAdaptationJob.objects.create(clinic=clinic, status="queued")

    def test_a_job_running_past_the_time_limit_is_failed_as_lost(self, clinic, enough, small_minimum, sent):
        from django.utils import timezone

        lost = SiteAdaptationJob.objects.create(
            clinic=clinic, status="running", started_at=timezone.now() - site_jobs.LOST_AFTER * 1.1
        )
        site_jobs.request_site_adaptation(clinic=clinic, user=admin_helpers.ml_admin())
        lost.refresh_from_db()
        assert lost.status == "failed" and "lost" in lost.error

    def test_a_cancelled_job_never_runs(self, clinic, tmp_path, settings):
        settings.VAR_DIR = tmp_path
        job = SiteAdaptationJob.objects.create(clinic=clinic)
        with pytest.raises(PermissionDenied):
            site_jobs.cancel_queued_job(job, user=admin_helpers.clinic_admin(clinic))
        assert site_jobs.cancel_queued_job(job, user=admin_helpers.ml_admin())
        job = site_jobs.run_site_adaptation(job.pk)
        assert job.status == "failed" and job.error.startswith("Cancelled by ml-admin") and job.started_at is None

    def test_a_second_delivery_of_a_running_job_does_nothing(self, clinic):
        job = SiteAdaptationJob.objects.create(clinic=clinic, status="running", progress="12:00:00 working\n")
        assert site_jobs.run_site_adaptation(job.pk).progress == "12:00:00 working\n"


class TestStartButton:
    URL = "/admin/inference/siteadaptationjob/add/"

    def test_an_ml_admin_sees_the_counts_and_starts_a_job(self, client, clinic, enough, small_minimum, sent):
        client.force_login(admin_helpers.ml_admin())
        page = client.get(self.URL, {"clinic": clinic.pk})
        assert page.status_code == 200
        rows = [(r["clinic"], r["device_model"], r["malignant"], r["benign"]) for r in page.context["counts"]]
        assert rows == [(clinic, "", 3, 3), (clinic, "DL5", 2, 3)]
        assert not SiteAdaptationJob.objects.exists()  # a GET starts nothing
        response = client.post(self.URL, {"clinic": clinic.pk, "device_model": ""})
        job = SiteAdaptationJob.objects.get()
        assert response.status_code == 302 and response["Location"].endswith(f"/{job.pk}/change/")
        again = client.post(self.URL, {"clinic": clinic.pk, "device_model": ""})
        assert again.status_code == 200 and "already queued" in again.content.decode()
        assert SiteAdaptationJob.objects.count() == 1

    def test_too_few_cases_is_a_form_error(self, client, clinic, enough, small_minimum, sent):
        client.force_login(admin_helpers.ml_admin())
        response = client.post(self.URL, {"clinic": clinic.pk, "device_model": "DL4"})
        assert response.status_code == 200
        assert "Too few local cases for Northside Dermatology / DL4" in response.content.decode()
        assert not SiteAdaptationJob.objects.exists() and sent == []

    @pytest.mark.parametrize("who", ["clinic_admin", "plain_staff"])
    def test_other_roles_may_not_start_one(self, client, clinic, enough, small_minimum, sent, who):
        client.force_login(getattr(admin_helpers, who)(clinic))
        assert client.get(self.URL).status_code == 403
        assert client.post(self.URL, {"clinic": clinic.pk}).status_code == 403
        assert not SiteAdaptationJob.objects.exists()

    def test_the_post_needs_the_csrf_token(self, clinic, enough, small_minimum, sent):
        from django.test import Client

        client = Client(enforce_csrf_checks=True)
        client.force_login(admin_helpers.ml_admin())
        assert client.post(self.URL, {"clinic": clinic.pk}).status_code == 403
        assert not SiteAdaptationJob.objects.exists()

    def test_a_clinic_admin_follows_the_jobs_progress_but_cannot_cancel(self, client, clinic):
        job = SiteAdaptationJob.objects.create(clinic=clinic, progress="10:00:00 features: 60 images\n")
        client.force_login(admin_helpers.clinic_admin(clinic))
        page = client.get("/admin/inference/siteadaptationjob/").content.decode()
        assert "features: 60 images" in page
        assert self.URL not in page and 'value="cancel_queued"' not in page
        response = client.post(
            "/admin/inference/siteadaptationjob/", {"action": "cancel_queued", "_selected_action": [job.pk]}
        )
        job.refresh_from_db()
        assert job.status == "queued" and response.status_code in (200, 302)

    def test_an_ml_admin_cancels_a_queued_job_from_the_list(self, client, clinic):
        job = SiteAdaptationJob.objects.create(clinic=clinic)
        client.force_login(admin_helpers.ml_admin())
        client.post("/admin/inference/siteadaptationjob/", {"action": "cancel_queued", "_selected_action": [job.pk]})
        job.refresh_from_db()
        assert job.status == "failed" and "Cancelled" in job.error

    def test_the_local_validation_page_links_to_it_for_ml_admins_only(self, client, clinic, tmp_path):
        from tests.conftest import BASELINE_DIR, register_model

        version = register_model(BASELINE_DIR)
        url = f"/admin/inference/site-validation/{version.pk}/?clinic={clinic.pk}"
        client.force_login(admin_helpers.ml_admin())
        assert f"{self.URL}?clinic={clinic.pk}" in client.get(url).content.decode()
        client.force_login(admin_helpers.plain_staff(clinic))
        assert self.URL not in client.get(url).content.decode()
