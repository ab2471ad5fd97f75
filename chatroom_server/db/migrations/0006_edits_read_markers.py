from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

# Unread counts subtract the rows after a read marker that are not live messages
# (edits, deletes, deleted messages): few, so a small partial index finds them.
# Plain SQL that SQLite and PostgreSQL share.
CHANGES_INDEX = (
    "CREATE INDEX messages_changes_idx ON messages (room_id, seq)"
    " WHERE kind <> 0 OR deleted_at IS NOT NULL"
)
DROP_CHANGES_INDEX = "DROP INDEX messages_changes_idx"


class Migration(migrations.Migration):
    dependencies = [('chat', '0005_rooms_members')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ReadMarkerRow',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('chat.UserRow', source_field='user_id', db_constraint=True, to_field='id', related_name='read_markers', on_delete=OnDelete.CASCADE)),
                ('room', fields.ForeignKeyField('chat.RoomRow', source_field='room_id', db_index=True, db_constraint=True, to_field='id', related_name='read_markers', on_delete=OnDelete.CASCADE)),
                ('last_read_id', fields.BigIntField()),
                ('last_read_seq', fields.BigIntField()),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'read_markers', 'app': 'chat', 'unique_together': (('user', 'room'),), 'pk_attr': 'id', 'table_description': 'How far a user has read a room: message `last_read_id`, whose seq is `last_read_seq`.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='MessageRow',
            name='deleted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='MessageRow',
            name='deleted_by_id',
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name='MessageRow',
            name='edited_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='MessageRow',
            name='kind',
            field=fields.SmallIntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='MessageRow',
            name='target_id',
            field=fields.BigIntField(null=True),
        ),
        ops.AddIndex(
            model_name='MessageRow',
            index=Index(fields=['room_id', 'user_id', 'seq']),
        ),
        ops.RunSQL(CHANGES_INDEX, reverse_sql=DROP_CHANGES_INDEX),
    ]
