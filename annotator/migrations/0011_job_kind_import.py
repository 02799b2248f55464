# Job.Kind.IMPORT: the browser import of a dataset zip or a server folder (issue 13 item 4).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotator", "0010_reader_studies"),
    ]

    operations = [
        migrations.AlterField(
            model_name="job",
            name="kind",
            field=models.CharField(
                choices=[
                    ("extract_patches", "Patch extraction"),
                    ("train", "Training"),
                    ("mine", "Unit mining"),
                    ("explain", "Batch explanation"),
                    ("caption", "Sentence generator training"),
                    ("import_dataset", "Dataset import"),
                ],
                max_length=32,
            ),
        ),
    ]
