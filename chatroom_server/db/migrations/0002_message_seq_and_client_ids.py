from tortoise import fields, migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import UniqueConstraint

# Number the messages already stored 1, 2, 3... per room in ID order, before the
# unique (room, seq) constraint goes on. Plain SQL that SQLite and PostgreSQL share.
NUMBER_EXISTING_MESSAGES = (
    "UPDATE messages SET seq = (SELECT COUNT(*) FROM messages AS earlier "
    "WHERE earlier.room_id = messages.room_id AND earlier.id <= messages.id)"
)
SET_ROOM_LAST_SEQ = (
    "UPDATE rooms SET last_seq = (SELECT COALESCE(MAX(seq), 0) FROM messages "
    "WHERE messages.room_id = rooms.id)"
)


class Migration(migrations.Migration):
    dependencies = [("chat", "0001_initial")]

    initial = False

    operations = [
        ops.AddField(
            model_name="MessageRow",
            name="seq",
            field=fields.BigIntField(default=0, db_default=0),
        ),
        ops.RunSQL(NUMBER_EXISTING_MESSAGES, reverse_sql=ops.RunSQL.noop),
        ops.AddField(
            model_name="RoomRow",
            name="last_seq",
            field=fields.BigIntField(default=0, db_default=0),
        ),
        ops.RunSQL(SET_ROOM_LAST_SEQ, reverse_sql=ops.RunSQL.noop),
        ops.AddConstraint(
            model_name="MessageRow",
            constraint=UniqueConstraint(fields=("room", "user", "client_message_id"), name=None),
        ),
        ops.AddConstraint(
            model_name="MessageRow",
            constraint=UniqueConstraint(fields=("room", "seq"), name=None),
        ),
    ]
