"""Reads of the clinical record: the patient list and its search."""

import pytest
from django.db import connection

from cases import selectors
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_it_lists_the_users_clinic_patients_by_name(owner, outsider, clinic):
    hopper = PatientFactory(clinic=clinic, family_name="Hopper", given_name="Grace")
    lovelace = PatientFactory(clinic=clinic, family_name="Lovelace", given_name="Ada")
    PatientFactory(family_name="Babbage")  # another clinic
    assert list(selectors.patients_for(owner)) == [hopper, lovelace]
    assert list(selectors.patients_for(outsider)) == []


def test_it_searches_names_and_mrn_and_counts_lesions(owner, clinic):
    grace = PatientFactory(clinic=clinic, family_name="Hopper", medical_record_number="MRN-77")
    PatientFactory(clinic=clinic, family_name="Lovelace")
    assert list(selectors.patients_for(owner, query=" hopp ")) == [grace]
    assert list(selectors.patients_for(owner, query="mrn-77")) == [grace]
    assert selectors.patients_for(owner, query="hopper").get().lesion_count == 0


@pytest.mark.parametrize(
    "query", ["Ada Lovelace", "Lovelace, Ada", "lovelace ada", "LOVELACE,ADA", " ada  lovelace ", "Lovelace", "ada"]
)
def test_a_search_finds_given_and_family_name_in_either_order(owner, clinic, query):
    ada = PatientFactory(clinic=clinic, given_name="Ada", family_name="Lovelace", medical_record_number="MRN-1815")
    PatientFactory(clinic=clinic, given_name="Grace", family_name="Hopper")
    PatientFactory(clinic=clinic, given_name="Augusta", family_name="Byron")
    assert list(selectors.patients_for(owner, query=query)) == [ada]


def test_every_word_must_match_a_name(owner, clinic):
    PatientFactory(clinic=clinic, given_name="Ada", family_name="Lovelace")
    assert list(selectors.patients_for(owner, query="Ada Hopper")) == []
    assert list(selectors.patients_for(owner, query=",")) == list(selectors.patients_for(owner))


def test_normalise_existing_mrns_in_the_migration_keeps_clashes_apart(clinic, outsider):
    """The data step of cases/migrations/0007: normalise, and never merge two patients."""
    import importlib

    from django.apps import apps

    from cases.models import Patient

    migration = importlib.import_module("cases.migrations.0007_normalised_mrn")
    # Rows as an older version stored them (the constraint of this version forbids them).
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX unique_normalised_mrn_per_clinic")  # a unique index on an expression
    first = PatientFactory(clinic=clinic, medical_record_number="X")
    second = PatientFactory(clinic=clinic, medical_record_number="Y")
    elsewhere = PatientFactory(clinic=outsider.clinics.get(), medical_record_number="Z")
    Patient.objects.filter(pk=first.pk).update(medical_record_number=" mrn-0001 ")
    Patient.objects.filter(pk=second.pk).update(medical_record_number="MRN-0001")
    Patient.objects.filter(pk=elsewhere.pk).update(medical_record_number="mrn-0001")
    migration.normalise_existing(apps, None)
    stored = dict(Patient.objects.values_list("pk", "medical_record_number"))
    assert stored[first.pk] == "MRN-0001"  # the oldest keeps it
    assert stored[second.pk] == "MRN-0001 DUPLICATE-2"
    assert stored[elsewhere.pk] == "MRN-0001"  # another clinic: no clash
