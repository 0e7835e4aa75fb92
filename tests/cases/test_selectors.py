"""Reads of the clinical record: the patient list and its search."""

import pytest

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
