from tortoise import fields, migrations
from tortoise.migrations import operations as ops

# Token signing keys with IDs (rotate-secret). Additive: until the first rotation
# the table is empty and tokens are signed and checked as before, with the legacy
# secret and no kid.


class Migration(migrations.Migration):
    dependencies = [("chat", "0006_edits_read_markers")]

    initial = False

    operations = [
        ops.CreateModel(
            name="SigningKeyRow",
            fields=[
                ("kid", fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ("secret", fields.CharField(max_length=255)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("retires_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={"table": "signing_keys", "app": "chat", "pk_attr": "kid"},
            bases=["Model"],
        ),
    ]
