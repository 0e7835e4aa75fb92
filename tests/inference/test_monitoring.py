"""The monitoring numbers on a small fixture whose answers were worked out by hand.

The fixture (all 2026, UTC): model versions v0 (retired), v1 (active) and v2
(shadow); clinics Northside (A) and Elsewhere (B). Per image: Fitzpatrick
type, the clinical prediction, the shadow prediction (v2), the reviews of the
clinical prediction (latest last) and so the image's histopathology truth
(P positive, N negative, - none or excluded).

    img  clinic month type  clinical (v1 unless noted)   shadow v2       reviews                       truth
    1    A      Jan   I     malignant .9                 malignant .8    agree/invasive                P
    2    A      Jan   II    benign .1                    benign .2       agree/benign                  N
    3    A      Jan   II    benign .3                    malignant .7    disagree/in situ              P
    4    A      Jan   -     uncertain .5                 malignant .6    agree/invasive                P
    5    A      Jan   V     failed                       benign .3       -                             -
    6    A      Jan   V     malignant .7, OOD            failed          -                             -
    7    A      Feb   I     malignant .8                 benign .4       disagree/-, agree/benign      N
    8    A      Feb   VI    benign .2                    uncertain .5    disagree/other malignant      - (excluded)
    9    A      Feb   VI    uncertain .45                -               -                             -
    10   A      Feb   III   failed                       -               -                             -
    11   A      Feb   III   pending                      -               -                             -
    12   A      Feb   I     benign .05                   -               agree/benign, disagree/-      N
    13   A      Jan   II    v0 malignant .6              -               agree/benign                  N
    14   B      Feb   IV    malignant .95                -               agree/invasive                P
"""

import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cases.models import LesionImage, Review
from inference.models import ModelVersion, Prediction
from inference.monitoring import (
    LABELS,
    Metrics,
    clinical_predictions_for_monitoring,
    monitoring_report,
    monthly_metrics,
    shadow_comparisons,
    skin_type_metrics,
    version_totals,
    wilson_interval,
)
from tests.factories import ClinicFactory, LesionFactory, MembershipFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db

JAN = date(2026, 1, 1)
FEB = date(2026, 2, 1)


def at(month, day, hour=12, minute=0):
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def make_version(version, **flags):
    return ModelVersion.objects.create(
        name="melanoma-cnn",
        version=version,
        file=f"models/melanoma-cnn-{version}.keras",
        sha256=version * 64,
        input_size=224,
        preprocessing="square-resize-v1",
        threshold=0.5,
        created_at=at(1, 1, hour=int(version)),
        **flags,
    )


def make_image(clinic, skin_type, uploader):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic, fitzpatrick_skin_type=skin_type))
    return LesionImage.objects.create(
        lesion=lesion,
        image=f"lesion-images/{uuid.uuid4()}.jpg",
        image_format="JPEG",
        modality=LesionImage.Modality.DERMOSCOPIC,
        captured_at=at(1, 1),
        uploaded_by=uploader,
        sha256="0" * 64,
        width=1,
        height=1,
        byte_size=1,
    )


def predict(image, version, queued_at, status="succeeded", label="", probability=None, ood=None):
    return Prediction.objects.create(
        image=image,
        model_version=version,
        is_shadow=version.is_shadow,
        status=status,
        label=label,
        probability_malignant=probability,
        out_of_distribution=ood,
        queued_at=queued_at,
    )


def review(prediction, reviewer, created_at, verdict, histopathology=""):
    return Review.objects.create(
        image=prediction.image,
        prediction=prediction,
        reviewer=reviewer,
        created_at=created_at,
        verdict=verdict,
        final_diagnosis=Review.Diagnosis.UNDETERMINED,
        histopathology_result=histopathology,
    )


class World:
    """The fixture of the module docstring, built once per test."""

    def __init__(self):
        self.v0 = make_version("0")
        self.v1 = make_version("1", is_active=True)
        self.v2 = make_version("2", is_shadow=True)
        self.clinic_a = ClinicFactory(name="Northside")
        self.clinic_b = ClinicFactory(name="Elsewhere")
        doctor = MembershipFactory(clinic=self.clinic_a, user=UserFactory(username="doctor")).user
        other = MembershipFactory(clinic=self.clinic_b, user=UserFactory(username="other")).user

        def case(clinic, skin_type, when, clinical, shadow=None, reviews=(), version=None):
            member = doctor if clinic == self.clinic_a else other
            image = make_image(clinic, skin_type, member)
            prediction = predict(image, version or self.v1, when, **clinical)
            if shadow is not None:
                # Created with the clinical one, a moment later, as request_prediction does.
                predict(image, self.v2, when.replace(second=1), **shadow)
            for minutes, (verdict, histopathology) in enumerate(reviews):
                # In the order given, so the last one listed is the latest.
                review(prediction, member, when.replace(hour=13, minute=minutes), verdict, histopathology)
            return image

        mal, ben, unc = Prediction.Label.MALIGNANT, Prediction.Label.BENIGN, Prediction.Label.UNCERTAIN
        H = Review.Histopathology
        A, B = self.clinic_a, self.clinic_b
        jan, feb = (lambda d: at(1, d)), (lambda d: at(2, d))
        self.images = {
            1: case(A, 1, jan(3), dict(label=mal, probability=0.9), dict(label=mal, probability=0.8),
                    [("agree", H.INVASIVE_MELANOMA)]),
            2: case(A, 2, jan(4), dict(label=ben, probability=0.1), dict(label=ben, probability=0.2),
                    [("agree", H.BENIGN)]),
            3: case(A, 2, jan(5), dict(label=ben, probability=0.3), dict(label=mal, probability=0.7),
                    [("disagree", H.MELANOMA_IN_SITU)]),
            4: case(A, None, jan(6), dict(label=unc, probability=0.5), dict(label=mal, probability=0.6),
                    [("agree", H.INVASIVE_MELANOMA)]),
            5: case(A, 5, jan(7), dict(status="failed"), dict(label=ben, probability=0.3)),
            # Late on 31 January UTC: already February in Auckland, still January here.
            6: case(A, 5, at(1, 31, 23, 30), dict(label=mal, probability=0.7, ood=True), dict(status="failed")),
            7: case(A, 1, feb(3), dict(label=mal, probability=0.8), dict(label=ben, probability=0.4),
                    [("disagree", ""), ("agree", H.BENIGN)]),
            8: case(A, 6, feb(4), dict(label=ben, probability=0.2), dict(label=unc, probability=0.5),
                    [("disagree", H.OTHER_MALIGNANT)]),
            9: case(A, 6, feb(5), dict(label=unc, probability=0.45)),
            10: case(A, 3, feb(6), dict(status="failed")),
            11: case(A, 3, feb(7), dict(status="pending")),
            12: case(A, 1, feb(8), dict(label=ben, probability=0.05),
                     reviews=[("agree", H.BENIGN), ("disagree", "")]),
            13: case(A, 2, jan(9), dict(label=mal, probability=0.6),
                     reviews=[("agree", H.BENIGN)], version=self.v0),
            14: case(B, 4, feb(9), dict(label=mal, probability=0.95), reviews=[("agree", H.INVASIVE_MELANOMA)]),
        }  # fmt: skip


@pytest.fixture
def world():
    return World()


def metrics_by_month(rows):
    return {(row.version.label, row.month): row.metrics for row in rows}


# The hand-computed answers for v1 per month (both clinics) and for v0.
V1_JANUARY = Metrics(
    predictions=6, succeeded=5, failed=1, abstained=1, out_of_distribution=1, reviewed=4, agreed=3,
    positives=2, true_positives=1, positives_abstained=1, negatives=1, true_negatives=1, negatives_abstained=0,
)  # fmt: skip
V1_FEBRUARY = Metrics(
    predictions=7, succeeded=5, failed=1, abstained=1, out_of_distribution=0, reviewed=4, agreed=2,
    positives=1, true_positives=1, positives_abstained=0, negatives=2, true_negatives=1, negatives_abstained=0,
)  # fmt: skip
V0_JANUARY = Metrics(predictions=1, succeeded=1, reviewed=1, agreed=1, negatives=1, true_negatives=0)


def test_it_counts_clinical_predictions_per_version_and_month(world):
    rows = monthly_metrics()
    assert [(row.version.label, row.month) for row in rows] == [
        ("melanoma-cnn-0", JAN),
        ("melanoma-cnn-1", JAN),
        ("melanoma-cnn-1", FEB),
    ]
    assert metrics_by_month(rows) == {
        ("melanoma-cnn-0", JAN): V0_JANUARY,
        ("melanoma-cnn-1", JAN): V1_JANUARY,
        ("melanoma-cnn-1", FEB): V1_FEBRUARY,
    }


def test_it_never_counts_shadow_predictions_as_clinical_rows(world):
    assert all(not row.version.is_shadow for row in monthly_metrics())
    assert all(not row.version.is_shadow for row in skin_type_metrics())


def test_it_computes_agreement_sensitivity_and_specificity_rates(world):
    january, february = (row.metrics for row in monthly_metrics(model_version=world.v1))
    assert (january.agreement.hits, january.agreement.n) == (3, 4)
    assert january.agreement.percent == "75.0%"
    assert (january.sensitivity.hits, january.sensitivity.n) == (1, 2)
    assert (january.specificity.hits, january.specificity.n) == (1, 1)
    assert january.positives_abstained == 1
    assert (february.agreement.hits, february.agreement.n) == (2, 4)
    assert (february.specificity.hits, february.specificity.n) == (1, 2)


def test_it_uses_the_latest_review_for_agreement_and_the_latest_recorded_histopathology(world):
    # Image 7: disagree then agree (counts as agree), benign recorded last: a false positive.
    # Image 12: agree with benign, then disagree with no result: disagree, still benign.
    annotated = {p.image_id: (p.verdict, p.histopathology) for p in clinical_predictions_for_monitoring()}
    assert annotated[world.images[7].pk] == ("agree", "benign")
    assert annotated[world.images[12].pk] == ("disagree", "benign")
    assert annotated[world.images[9].pk] == (None, None)
    rows = monthly_metrics(start=FEB, end=FEB, clinic=world.clinic_a, model_version=world.v1)
    assert len(rows) == 1
    february = rows[0].metrics
    assert (february.reviewed, february.agreed) == (3, 1)
    assert (february.negatives, february.true_negatives) == (2, 1)
    # Image 8's "other malignancy" is neither positive nor negative.
    assert (february.positives, february.positives_abstained) == (0, 0)


def test_it_sums_months_into_version_totals(world):
    totals = {total.version.label: total.metrics for total in version_totals(monthly_metrics())}
    assert totals == {"melanoma-cnn-0": V0_JANUARY, "melanoma-cnn-1": V1_JANUARY + V1_FEBRUARY}
    v1 = totals["melanoma-cnn-1"]
    assert (v1.predictions, v1.succeeded, v1.failed, v1.abstained, v1.out_of_distribution) == (13, 10, 2, 2, 1)
    assert (v1.agreement.hits, v1.agreement.n) == (5, 8)
    assert (v1.sensitivity.hits, v1.sensitivity.n) == (2, 3)
    assert (v1.specificity.hits, v1.specificity.n) == (2, 3)
    assert v1.in_progress == 1
    assert v1.decisive == 8


def test_it_gives_wilson_intervals_where_there_is_data():
    assert wilson_interval(0, 0) is None
    assert wilson_interval(2, 3) == pytest.approx((0.2077, 0.9385), abs=1e-4)
    assert wilson_interval(1, 2) == pytest.approx((0.0945, 0.9055), abs=1e-4)
    assert wilson_interval(0, 1) == pytest.approx((0.0, 0.7935), abs=1e-4)
    assert Metrics(positives=3, true_positives=2).sensitivity.interval_text == "20.8–93.9%"
    assert Metrics().sensitivity.percent == "—"


def test_it_filters_by_clinic(world):
    rows = monthly_metrics(clinic=world.clinic_b)
    assert metrics_by_month(rows) == {
        ("melanoma-cnn-1", FEB): Metrics(
            predictions=1, succeeded=1, reviewed=1, agreed=1, positives=1, true_positives=1
        ),
    }


def test_it_filters_by_month_range_in_utc_months(world):
    assert {row.month for row in monthly_metrics(start=FEB)} == {FEB}
    assert {row.month for row in monthly_metrics(end=JAN)} == {JAN}
    assert monthly_metrics(start=date(2026, 3, 1)) == []
    # Image 6 was queued late on 31 January UTC: January, even where it was already February.
    with timezone.override(ZoneInfo("Pacific/Auckland")):
        january = metrics_by_month(monthly_metrics(end=JAN))[("melanoma-cnn-1", JAN)]
    assert january == V1_JANUARY


def test_it_breaks_the_metrics_down_by_fitzpatrick_type(world):
    rows = skin_type_metrics(model_version=world.v1)
    by_type = {row.skin_type_label: row.metrics for row in rows}
    assert [row.skin_type_label for row in rows] == ["I", "II", "III", "IV", "V", "VI", "Not recorded"]
    assert by_type == {
        "I": Metrics(predictions=3, succeeded=3, reviewed=3, agreed=2, positives=1, true_positives=1,
                     negatives=2, true_negatives=1),
        "II": Metrics(predictions=2, succeeded=2, reviewed=2, agreed=1, positives=1, true_positives=0,
                      negatives=1, true_negatives=1),
        "III": Metrics(predictions=2, failed=1),
        "IV": Metrics(predictions=1, succeeded=1, reviewed=1, agreed=1, positives=1, true_positives=1),
        "V": Metrics(predictions=2, succeeded=1, failed=1, out_of_distribution=1),
        "VI": Metrics(predictions=2, succeeded=2, abstained=1, reviewed=1, agreed=0),
        "Not recorded": Metrics(predictions=1, succeeded=1, abstained=1, reviewed=1, agreed=1, positives_abstained=1),
    }  # fmt: skip
    assert [(row.version.label, row.skin_type) for row in skin_type_metrics(model_version=world.v0)] == [
        ("melanoma-cnn-0", 2)
    ]


def test_it_compares_the_shadow_model_with_the_active_one_on_the_same_images(world):
    (comparison,) = shadow_comparisons()
    assert (comparison.shadow.label, comparison.active.label) == ("melanoma-cnn-2", "melanoma-cnn-1")
    # Images 1, 2, 3, 4, 7, 8; image 5's clinical prediction and image 6's shadow one failed.
    assert comparison.paired == 6
    assert (comparison.label_agreement.hits, comparison.label_agreement.n) == (2, 6)
    # |Δp| = .1 + .1 + .4 + .1 + .4 + .3 = 1.4 over 6 images.
    assert comparison.mean_absolute_difference == pytest.approx(1.4 / 6)
    mal, ben, unc = Prediction.Label.MALIGNANT, Prediction.Label.BENIGN, Prediction.Label.UNCERTAIN
    assert comparison.cross_table == {
        ben: {ben: 1, mal: 1, unc: 1},
        mal: {ben: 1, mal: 1, unc: 0},
        unc: {ben: 0, mal: 1, unc: 0},
    }
    assert sum(sum(row.values()) for row in comparison.cross_table.values()) == comparison.paired
    assert list(comparison.cross_table) == list(LABELS)
    active, shadow = comparison.active_metrics, comparison.shadow_metrics
    assert (active.true_positives, active.positives, active.positives_abstained) == (1, 2, 1)
    assert (active.true_negatives, active.negatives) == (1, 2)
    assert (shadow.true_positives, shadow.positives, shadow.positives_abstained) == (3, 3, 0)
    assert (shadow.true_negatives, shadow.negatives) == (2, 2)


def test_it_filters_the_shadow_comparison_like_the_rest(world):
    (february,) = shadow_comparisons(start=FEB, end=FEB)
    assert february.paired == 2  # images 7 and 8
    assert (february.label_agreement.hits, february.shadow_metrics.true_negatives) == (0, 1)
    assert shadow_comparisons(clinic=world.clinic_b) == []
    assert shadow_comparisons(model_version=world.v0) == []
    assert [c.paired for c in shadow_comparisons(model_version=world.v2)] == [6]


def test_it_pairs_a_shadow_prediction_with_the_clinical_one_made_at_the_same_time(world):
    # Image 2 is re-run by v0 a month later: the pair stays v1's benign .1, made with the shadow one.
    predict(world.images[2], world.v0, at(2, 20), label=Prediction.Label.MALIGNANT, probability=0.99)
    comparisons = {c.active.label: c for c in shadow_comparisons()}
    assert list(comparisons) == ["melanoma-cnn-1"]
    assert comparisons["melanoma-cnn-1"].mean_absolute_difference == pytest.approx(1.4 / 6)


def test_the_report_is_empty_without_predictions(db):
    report = monitoring_report()
    assert report.is_empty
    assert (report.months, report.versions, report.skin_types, report.shadow) == ([], [], [], [])


# ---- The admin page -------------------------------------------------------------


@pytest.fixture
def staff(db):
    """Active staff with no role and no model permissions: may view every admin page."""
    return UserFactory(username="staff", is_staff=True)


def monitoring_page(client, **query):
    return client.get(reverse("inference_monitoring"), query)


def test_staff_see_the_monitoring_numbers(client, staff, world):
    client.force_login(staff)
    response = monitoring_page(client)
    assert response.status_code == 200
    page = response.content.decode()
    assert "melanoma-cnn-1 · 2026-01" in page
    assert "75.0% (3/4)" in page  # v1's January agreement
    assert "62.5% (5/8)" in page  # v1's agreement over both months
    assert '66.7% (2/3) <span class="interval">95% CI 20.8–93.9%</span>' in page  # v1 sensitivity
    assert "melanoma-cnn-1 · Not recorded" in page
    assert "melanoma-cnn-2 (shadow) against melanoma-cnn-1 (active)" in page
    assert "33.3% (2/6)" in page  # same label on 2 of 6 paired images
    assert "0.233" in page  # mean |Δp| = 1.4 / 6
    report = response.context["report"]
    assert [total.metrics for total in report.versions] == [V0_JANUARY, V1_JANUARY + V1_FEBRUARY]


def test_the_charts_are_inline_svg_with_a_title_and_a_table_of_the_same_numbers(client, staff, world):
    client.force_login(staff)
    response = monitoring_page(client)
    page = response.content.decode()
    charts = response.context["charts"]
    assert [chart.id for chart in charts] == ["agreement-chart", "accuracy-chart", "outcomes-chart"]
    for chart in charts:
        assert f'<title id="{chart.id}-title">{chart.title}</title>' in page
    agreement = charts[0]
    assert agreement.columns == ["", "melanoma-cnn-0", "melanoma-cnn-1"]
    assert agreement.rows[0][0] == "2026-01"
    assert agreement.rows[0][2] == "75.0% (3/4; 95% CI 30.1–95.4%)"
    assert agreement.rows[1][1] == "—"  # v0 made no prediction in February: no bar, no rate
    # One bar per rate that exists: v0 and v1 in January, v1 in February.
    assert len(agreement.bars) == 3
    outcomes = charts[2]
    assert outcomes.rows == [
        ["melanoma-cnn-0 2026-01", 1, 0, 0, 0, 1],
        ["melanoma-cnn-1 2026-01", 4, 1, 1, 0, 6],
        ["melanoma-cnn-1 2026-02", 4, 1, 1, 1, 7],
    ]
    (shadow_chart,) = (chart for _, _, chart in response.context["comparisons"])
    assert shadow_chart.rows == [
        ["Sensitivity", "50.0% (1/2; 95% CI 9.5–90.5%)", "100.0% (3/3; 95% CI 43.9–100.0%)"],
        ["Specificity", "50.0% (1/2; 95% CI 9.5–90.5%)", "100.0% (2/2; 95% CI 34.2–100.0%)"],
    ]
    assert "<script" not in page.split('id="content-main"')[1]


def test_the_filters_narrow_the_numbers(client, staff, world):
    client.force_login(staff)
    response = monitoring_page(client, clinic=str(world.clinic_b.pk), start="2026-01", end="2026-02")
    assert response.status_code == 200
    report = response.context["report"]
    assert [(row.version.label, row.month) for row in report.months] == [("melanoma-cnn-1", FEB)]
    assert report.shadow == []
    response = monitoring_page(client, model_version=str(world.v0.pk))
    assert [total.version.label for total in response.context["report"].versions] == ["melanoma-cnn-0"]


@pytest.mark.parametrize(
    "query, message",
    [
        ({"start": "2026-13"}, "Enter a valid date."),
        ({"clinic": "not-a-uuid"}, "is not a valid UUID."),
        ({"model_version": str(uuid.uuid4())}, "Select a valid choice."),
        ({"start": "2026-03", "end": "2026-01"}, "The first month comes after the last one."),
    ],
)
def test_bad_filters_show_a_form_error(client, staff, world, query, message):
    client.force_login(staff)
    response = monitoring_page(client, **query)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert response.context["report"] is None


def test_it_renders_with_no_data(client, staff):
    client.force_login(staff)
    response = monitoring_page(client)
    assert response.status_code == 200
    assert "No predictions match these filters." in response.content.decode()
    assert response.context["charts"] == []


def test_non_staff_are_sent_to_the_admin_login(client, world):
    clinician = UserFactory(username="doctor")  # a clinic member, not staff
    client.force_login(clinician)
    response = monitoring_page(client)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert "melanoma" not in response.content.decode()


def test_anonymous_visitors_are_sent_to_the_admin_login(client):
    response = monitoring_page(client)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={reverse('inference_monitoring')}"


def test_inactive_staff_are_sent_to_the_admin_login(client, staff):
    staff.is_active = False
    staff.save()
    client.force_login(staff)
    assert monitoring_page(client).status_code == 302


def test_the_admin_index_links_to_the_monitoring_page(client, staff):
    client.force_login(staff)
    response = client.get(reverse("admin:index"))
    assert f'href="{reverse("inference_monitoring")}"' in response.content.decode()


def add_cases(count, clinic, uploader, active, shadow):
    for index in range(count):
        image = make_image(clinic, index % 6 + 1, uploader)
        prediction = predict(image, active, at(1 + index % 2, 10), label=Prediction.Label.MALIGNANT, probability=0.8)
        predict(image, shadow, at(1 + index % 2, 10, minute=1), label=Prediction.Label.BENIGN, probability=0.3)
        review(prediction, uploader, at(2, 20), "agree", Review.Histopathology.INVASIVE_MELANOMA)


def test_the_query_count_does_not_grow_with_the_rows(client, staff):
    active, shadow = make_version("1", is_active=True), make_version("2", is_shadow=True)
    clinic = ClinicFactory()
    uploader = MembershipFactory(clinic=clinic).user
    client.force_login(staff)

    def queries():
        with CaptureQueriesContext(connection) as context:
            assert monitoring_page(client).status_code == 200
        return len(context)

    add_cases(2, clinic, uploader, active, shadow)
    few = queries()
    add_cases(20, clinic, uploader, active, shadow)
    assert queries() == few
    assert monitoring_page(client).context["report"].shadow[0].paired == 22
