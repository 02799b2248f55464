# UnitConsensus becomes a VersionedLabel like the experts' answers: it gains their created_at.
# Consensus rows from before this migration get the migration's time.

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("annotator", "0004_annotations")]

    operations = [
        migrations.AddField(
            model_name="unitconsensus",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
    ]
