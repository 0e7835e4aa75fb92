"""The monitoring page (inference/admin/monitoring.py): the numbers of the hand-worked world
(monitoring/world.py) as staff see them, its charts, its filters, and who may see it."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import ClinicFactory, MembershipFactory, UserFactory

from .monitoring.world import FEB, V0_JANUARY, V1_FEBRUARY, V1_JANUARY, World, add_cases, make_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return World()


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
    assert agreement.columns == ["Month", "melanoma-cnn-0", "melanoma-cnn-1"]
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
