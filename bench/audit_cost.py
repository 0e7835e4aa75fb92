"""What the read audit costs per request (not a test).

Builds a scratch PostgreSQL database (`skincare_audit_bench`) with one
clinic, one patient and one stored image, then times, through Django's test
client with a signed-in clinician, the same reads with the read-audit
middleware in place and with it removed:

- the patient page (one audit row per request),
- the image bytes (one row per request),
- the patient list (one row listing every id shown).

It prints the median time per request of each, the difference, and the
time of one audit insert measured alone. Run it on a quiet machine:

    .venv/bin/python bench/audit_cost.py [--repeat 300]
"""

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DB_URL = os.environ.get("SKINCARE_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/skincare_audit_bench")
MIDDLEWARE = "core.middleware.ReadAuditMiddleware"


def timed(client, url, repeat):
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(url)
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
        samples.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "skincare.settings.test",
            "DATABASE_URL": DB_URL,
            "SKINCARE_MEDIA_ROOT": tempfile.mkdtemp(prefix="skincare-audit-bench-"),
            "SKINCARE_LOG_LEVEL": "WARNING",
        }
    )
    import django
    import psycopg

    name = DB_URL.rsplit("/", 1)[1]
    with psycopg.connect(DB_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    django.setup()
    from django.core.management import call_command
    from django.test import Client, override_settings
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from cases import services
    from cases.models import Clinic, Membership
    from core.audit import log_read
    from core.models import AuditEvent
    from tests.factories import LesionFactory, PatientFactory, UserFactory

    setup_test_environment()
    call_command("migrate", verbosity=0)
    clinic = Clinic.objects.create(name="Bench clinic")
    user = UserFactory(username="bench")
    Membership.objects.create(user=user, clinic=clinic)
    patient = PatientFactory(clinic=clinic)
    data = sorted((REPO / "demo" / "images").rglob("*.jp*g"))[0].read_bytes()
    image = services.add_lesion_image(
        uploader=user, lesion=LesionFactory(patient=patient), file=io.BytesIO(data), modality="dermoscopic"
    )
    client = Client()
    client.force_login(user)
    urls = {
        "patient page": reverse("portal:patient-detail", args=[patient.pk]),
        "image bytes": reverse("portal:image-file", args=[image.pk]),
        "patient list": reverse("portal:patient-list"),
    }
    without = [m for m in django.conf.settings.MIDDLEWARE if m != MIDDLEWARE]
    print(f"{'read':<14} {'audited ms':>11} {'not audited ms':>15} {'difference ms':>14}")
    for label, url in urls.items():
        timed(client, url, 20)  # warm up
        audited = timed(client, url, args.repeat)
        with override_settings(MIDDLEWARE=without):
            plain = timed(client, url, args.repeat)
        print(f"{label:<14} {audited:>11.2f} {plain:>15.2f} {audited - plain:>14.2f}")
    samples = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        log_read(user=user, channel="portal", address="127.0.0.1", model="cases.patient", object_id=patient.pk)
        samples.append((time.perf_counter() - t0) * 1000)
    print(f"one audit insert alone: median {statistics.median(samples):.2f} ms ({AuditEvent.objects.count()} rows)")


if __name__ == "__main__":
    main()
