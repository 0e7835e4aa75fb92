from django.db import migrations


class Migration(migrations.Migration):
    """DeviceToken and IdempotencyRecord now belong to api, AuditEvent to core.

    State only: the tables keep their names (each model sets db_table), so no
    row moves and a rollback of this migration needs no data step.
    """

    dependencies = [
        ('cases', '0004_admin_review_and_lifecycle'),
        ('api', '0001_initial'),
        ('core', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='DeviceToken'),
                migrations.DeleteModel(name='IdempotencyRecord'),
                migrations.DeleteModel(name='AuditEvent'),
            ],
        ),
    ]
