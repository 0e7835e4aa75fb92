"""What the near-duplicate check costs an upload as a clinic's archive grows (not a test).

Every upload compares its perceptual hash with every image of its clinic
(``cases.services._near_duplicates``). This fills a scratch PostgreSQL
database's one clinic with image rows carrying random 256-bit hashes (rows
only, no files; one patient in ten holds the probe's patient's share) and
times the check for a new hash, both ways: in PostgreSQL (``bit_count`` over
the XOR, the shipped path) and by fetching every hash into Python (the
SQLite path, and PostgreSQL's before). Process CPU of this process and wall
time, best of ``--repeat``.

Usage: .venv/bin/python bench/duplicate_scan.py [--sizes 1000 10000 50000]
See docs/benchmarks.md ("Upload path").
"""

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.upload_profile import scratch_world  # noqa: E402  (after the path is set)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    user, lesion = scratch_world("duplicate-scan")
    from django.utils import timezone

    from cases import services
    from cases.models import Lesion, LesionImage, Patient

    rng = random.Random(0)
    patient = lesion.patient
    others = [
        Lesion.objects.create(
            patient=Patient.objects.create(
                clinic=patient.clinic, medical_record_number=f"O{i}", given_name="O", family_name="O",
                date_of_birth=patient.date_of_birth,
            ),
            anatomical_site=lesion.anatomical_site,
        )
        for i in range(9)
    ]  # fmt: skip
    lesions = [lesion, *others]
    count = 0
    print("images in the clinic | in PostgreSQL: CPU / wall ms | fetched into Python: CPU / wall ms")
    for size in sorted(args.sizes):
        rows = [
            LesionImage(
                lesion=lesions[i % len(lesions)], uploaded_by=user, captured_at=timezone.now(), sha256=f"{i:064x}",
                width=1, height=1, byte_size=1, perceptual_hash=f"{rng.getrandbits(256):064x}",
            )
            for i in range(count, size)
        ]  # fmt: skip
        LesionImage.objects.bulk_create(rows, batch_size=5000)
        count = size
        probe = f"{rng.getrandbits(256):064x}"
        candidates = LesionImage.objects.filter(lesion__patient__clinic_id=patient.clinic_id).exclude(
            perceptual_hash=""
        )
        timings = []
        for scan, scan_args in (
            (services._near_duplicates, (patient, probe)),
            (services._nearest_in_python, (candidates, patient, probe)),
        ):
            best = (float("inf"), float("inf"))
            for _ in range(args.repeat):
                c0, w0 = time.process_time(), time.perf_counter()
                scan(*scan_args)
                best = min(best, ((time.process_time() - c0) * 1000, (time.perf_counter() - w0) * 1000))
            timings.append(best)
        (sql_cpu, sql_wall), (py_cpu, py_wall) = timings
        print(f"{size:>20} | {sql_cpu:8.1f} / {sql_wall:8.1f} | {py_cpu:8.1f} / {py_wall:8.1f}")


if __name__ == "__main__":
    main()
