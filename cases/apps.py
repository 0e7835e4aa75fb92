from django.apps import AppConfig
from django.db.models.signals import post_migrate

ML_ADMIN_PERMISSIONS = [
    ("inference", "register_modelversion"),
    ("inference", "activate_modelversion"),
    ("inference", "view_modelversion"),
    ("inference", "view_modelactivation"),
    ("inference", "view_prediction"),
]


def ensure_ml_admins_group(sender=None, using="default", **kwargs):
    """Create the "ML admins" group with its model-registry permissions. Idempotent.

    Runs after every migrate (and after a test database flush), so the group
    exists wherever the schema does; members are added by hand in the admin.
    """
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    from .permissions import ML_ADMINS_GROUP

    # The inference app's permissions are created by its own post_migrate
    # step, which may not have run yet: create them first.
    create_permissions(apps.get_app_config("inference"), verbosity=0, using=using)
    group, _ = Group.objects.using(using).get_or_create(name=ML_ADMINS_GROUP)
    wanted = Permission.objects.using(using).filter(
        content_type__app_label="inference",
        codename__in=[codename for _app, codename in ML_ADMIN_PERMISSIONS],
    )
    group.permissions.add(*wanted)


class CasesConfig(AppConfig):
    name = "cases"
    verbose_name = "Clinical cases"

    def ready(self):
        post_migrate.connect(ensure_ml_admins_group, sender=self, dispatch_uid="cases.ensure_ml_admins_group")
