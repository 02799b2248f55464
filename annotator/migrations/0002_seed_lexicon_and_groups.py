"""Seed the BI-RADS lexicon (Concept rows) and the three user groups."""

from django.db import migrations

# Frozen copy semantics: this migration reads the lexicon as it stood when written. A later change
# to mining/birads.py needs its own data migration.
from mining.birads import CATEGORIES, LEXICON

GROUPS = ("expert", "admin", "researcher")


def seed(apps, schema_editor):
    Concept = apps.get_model("annotator", "Concept")
    for entry in LEXICON:
        Concept.objects.update_or_create(
            code=entry.code,
            defaults={
                "category": entry.category,
                "category_label": CATEGORIES[entry.category],
                "term": entry.term,
                "association": entry.association,
            },
        )
    Group = apps.get_model("auth", "Group")
    for name in GROUPS:
        Group.objects.get_or_create(name=name)


def unseed(apps, schema_editor):
    apps.get_model("annotator", "Concept").objects.filter(code__in=[e.code for e in LEXICON]).delete()
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("annotator", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]
    operations = [migrations.RunPython(seed, unseed)]
