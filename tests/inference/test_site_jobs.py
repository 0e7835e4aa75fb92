"""Site adaptation as a job on the ``training`` queue: who may start it, where it is sent,
its progress and failure recorded, and who sees it in the admin."""

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied

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
