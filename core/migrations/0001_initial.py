import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """The audit trail moves from cases to core by name only: state, not database."""

    initial = True

    dependencies = [
        ('cases', '0004_admin_review_and_lifecycle'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
        migrations.CreateModel(
                    name='AuditEvent',
                    fields=[
                        ('id', models.BigAutoField(primary_key=True, serialize=False)),
                        ('at', models.DateTimeField(db_index=True, default=django.utils.timezone.now, editable=False)),
                        ('action', models.CharField(choices=[('created', 'Created'), ('changed', 'Changed'), ('deleted', 'Deleted'), ('action', 'Admin action')], max_length=10)),
                        ('model', models.CharField(db_index=True, max_length=100)),
                        ('object_id', models.CharField(db_index=True, max_length=64)),
                        ('object_repr', models.CharField(max_length=200)),
                        ('changes', models.JSONField(blank=True, default=dict)),
                        ('description', models.CharField(blank=True, max_length=300)),
                        ('user', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'cases_auditevent',
                        'ordering': ['-at', '-id'],
                    },
                ),
            ],
        ),
    ]
