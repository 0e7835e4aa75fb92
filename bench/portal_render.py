"""Portal page render times at clinic scale (not a test).

Builds a scratch PostgreSQL database (`skincare_portal_bench`) holding one
clinic with 1,000 patients, 3,000 lesions and 10,000 images (bulk-created
rows; the image files are a handful of stored demo images shared between
rows), each with a prediction (mostly finished, some pending or failed) and
about a third of them reviewed. Then renders, through Django's test client
with a signed-in clinician:

- the worklist (home page, first page and a filtered page),
- the patient list and a search,
- a patient page (10 images over 3 lesions),

and prints the median render time over --repeat requests and the number of
SQL queries per page. Run it on a quiet machine:

    .venv/bin/python bench/portal_render.py [--repeat 30]
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DB_URL = os.environ.get("SKINCARE_BENCH_DATABASE_URL") or os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/skincare_portal_bench"
)
PATIENTS, LESIONS_PER_PATIENT, IMAGES = 1_000, 3, 10_000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    media = Path(tempfile.mkdtemp(prefix="skincare-portal-bench-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "skincare.settings.test",
            "DATABASE_URL": DB_URL,
            "SKINCARE_MEDIA_ROOT": str(media),
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
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from django.utils import timezone

    from cases.models import AnatomicalSite, Clinic, Lesion, LesionImage, Membership, Patient, Review
    from inference.models import ModelVersion, Prediction
    from tests.factories import UserFactory

    setup_test_environment()
    call_command("migrate", verbosity=0)
    rng = random.Random(7)
    started = time.perf_counter()

    clinic = Clinic.objects.create(name="Bench clinic")
    user = UserFactory(username="bench")
    Membership.objects.create(user=user, clinic=clinic)
    model = ModelVersion.objects.create(
        name="bench", version="1", file="models/bench.keras", sha256="0" * 64, input_size=224,
        preprocessing="square-resize-v1", threshold=0.5, is_active=True,
    )  # fmt: skip
    stored = []
    for path in sorted((REPO / "demo" / "images").glob("*/*.jpg"))[:4]:
        stored.append(default_storage.save(f"lesion-images/shared-{path.name}", ContentFile(path.read_bytes())))

    now = timezone.now()
    patients = Patient.objects.bulk_create(
        Patient(
            clinic=clinic,
            medical_record_number=f"B-{n:06d}",
            given_name=rng.choice(["Ada", "Ben", "Chen", "Dana", "Emil", "Fatima", "Goran", "Hana"]),
            family_name=f"Family{n:04d}",
            date_of_birth=(now - timedelta(days=rng.randint(20 * 365, 90 * 365))).date(),
        )
        for n in range(PATIENTS)
    )
    sites = [s for s in AnatomicalSite.values if s != "unknown"]
    lesions = Lesion.objects.bulk_create(
        Lesion(patient=p, anatomical_site=rng.choice(sites), description=f"lesion {k}")
        for p in patients
        for k in range(LESIONS_PER_PATIENT)
    )
    # 10 images for the first patient's lesions (the patient page measured), the rest spread at random.
    targets = [lesions[k % 3] for k in range(10)] + [rng.choice(lesions) for _ in range(IMAGES - 10)]
    images = LesionImage.objects.bulk_create(
        LesionImage(
            lesion=lesion,
            image=stored[n % len(stored)],
            image_format="JPEG",
            modality="dermoscopic",
            captured_at=now - timedelta(days=rng.randint(0, 900)),
            uploaded_by=user,
            uploaded_at=now - timedelta(minutes=rng.randint(0, 60 * 24 * 60)),
            sha256=f"{n:064x}",
            width=300,
            height=300,
            byte_size=7000,
        )
        for n, lesion in enumerate(targets)
    )
    predictions = []
    for image in images:
        roll = rng.random()
        if roll < 0.03:
            predictions.append(Prediction(image=image, model_version=model, status="pending"))
        elif roll < 0.04:
            predictions.append(Prediction(image=image, model_version=model, status="failed", error="bench"))
        else:
            p = rng.random()
            label = "malignant" if p > 0.6 else "uncertain" if p > 0.45 else "benign"
            predictions.append(
                Prediction(
                    image=image,
                    model_version=model,
                    status="succeeded",
                    label=label,
                    probability_malignant=p,
                    confidence=abs(p - 0.5) * 2,
                )  # fmt: skip
            )
    Prediction.objects.bulk_create(predictions)
    Review.objects.bulk_create(
        Review(image=image, reviewer=user, verdict="agree", final_diagnosis="nevus")
        for image in images
        if rng.random() < 1 / 3
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(
        f"seeded {PATIENTS} patients, {len(lesions)} lesions, {len(images)} images"
        f" in {time.perf_counter() - started:.1f} s"
    )

    client = Client()
    client.force_login(user)
    pages = {
        "worklist (page 1)": "/",
        "worklist, risk=malignant, page 5": "/?risk=malignant&page=5",
        "patient list (page 1)": "/patients/",
        "patient search 'Family012'": "/patients/?q=Family012",
        "patient page (3 lesions, 10 images)": f"/patients/{patients[0].pk}/",
    }
    print("\n| page | median ms | p90 ms | SQL queries |\n| --- | ---: | ---: | ---: |")
    for label, url in pages.items():
        client.get(url)  # warm
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        times.sort()
        p90 = times[int(0.9 * (len(times) - 1))]
        print(f"| {label} | {statistics.median(times):.1f} | {p90:.1f} | {len(queries)} |")


if __name__ == "__main__":
    main()
