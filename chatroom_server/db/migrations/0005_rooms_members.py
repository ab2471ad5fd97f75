from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('chat', '0004_sessions')]

    initial = False

    operations = [
        ops.CreateModel(
            name='RoomBanRow',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('room', fields.ForeignKeyField('chat.RoomRow', source_field='room_id', db_constraint=True, to_field='id', related_name='bans', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('chat.UserRow', source_field='user_id', db_constraint=True, to_field='id', related_name='bans', on_delete=OnDelete.CASCADE)),
                ('until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('reason', fields.CharField(null=True, max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'room_bans', 'app': 'chat', 'unique_together': (('room', 'user'),), 'pk_attr': 'id', 'table_description': 'A user banned from a room until `until` (NULL: until lifted).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RoomMemberRow',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('room', fields.ForeignKeyField('chat.RoomRow', source_field='room_id', db_constraint=True, to_field='id', related_name='members', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('chat.UserRow', source_field='user_id', db_index=True, db_constraint=True, to_field='id', related_name='memberships', on_delete=OnDelete.CASCADE)),
                ('role', fields.CharField(max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'room_members', 'app': 'chat', 'unique_together': (('room', 'user'),), 'pk_attr': 'id', 'table_description': 'A member of a room and their role there: "owner", "moderator" or "member".'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RoomMuteRow',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('room', fields.ForeignKeyField('chat.RoomRow', source_field='room_id', db_constraint=True, to_field='id', related_name='mutes', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('chat.UserRow', source_field='user_id', db_constraint=True, to_field='id', related_name='mutes', on_delete=OnDelete.CASCADE)),
                ('until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'room_mutes', 'app': 'chat', 'unique_together': (('room', 'user'),), 'pk_attr': 'id', 'table_description': 'A user who may read a room but not post in it until `until` (NULL: until lifted).'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='RoomRow',
            name='direct_key',
            field=fields.CharField(null=True, unique=True, max_length=64),
        ),
        ops.AddField(
            model_name='RoomRow',
            name='owner',
            field=fields.ForeignKeyField('chat.UserRow', source_field='owner_id', null=True, db_constraint=True, to_field='id', related_name='owned_rooms', on_delete=OnDelete.SET_NULL),
        ),
        ops.AddField(
            model_name='RoomRow',
            name='visibility',
            field=fields.CharField(default='public', db_default='public', max_length=16),
        ),
        ops.AlterModelOptions(
            name='SessionRow',
            options={'table': 'sessions', 'app': 'chat', 'pk_attr': 'id', 'table_description': "A login: the token's `sid`. Ended sessions stay (ended_at set) until pruned."},
        ),
        ops.AddField(
            model_name='UserRow',
            name='is_admin',
            field=fields.BooleanField(default=False, db_default=False),
        ),
    ]
