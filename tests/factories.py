import datetime

import factory
from django.contrib.auth import get_user_model

from cases.models import AnatomicalSite, Clinic, Lesion, Membership, Patient


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery")


class ClinicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Clinic

    name = factory.Sequence(lambda n: f"Clinic {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    clinic = factory.SubFactory(ClinicFactory)


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    clinic = factory.SubFactory(ClinicFactory)
    medical_record_number = factory.Sequence(lambda n: f"MRN-{n:05d}")
    given_name = "Jane"
    family_name = factory.Sequence(lambda n: f"Doe{n}")
    date_of_birth = datetime.date(1970, 1, 1)


class LesionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lesion

    patient = factory.SubFactory(PatientFactory)
    anatomical_site = AnatomicalSite.POSTERIOR_TORSO
