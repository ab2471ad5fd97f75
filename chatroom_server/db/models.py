"""Tortoise models. Only `db/` and `services/` import this module."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class UserRow(Model):
    id = fields.BigIntField(primary_key=True)
    user_name = fields.CharField(max_length=64)
    # names.name_key(user_name): two names that look alike share it, and the unique
    # index refuses the second. NULL for duplicates that existed before 0003 (NULLs
    # never collide), so an upgrade renames nobody.
    name_key = fields.CharField(max_length=64, null=True, unique=True)
    email = fields.CharField(max_length=254, unique=True)
    password_hash = fields.CharField(max_length=128)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    deleted_at = fields.DatetimeField(null=True)
    # Set by an administrator: every token of the user is refused while it is.
    deactivated_at = fields.DatetimeField(null=True)
    # Tokens without a session (issued before sessions existed) that were issued
    # before this moment are refused: logout-all and a password change set it.
    tokens_valid_after = fields.DatetimeField(null=True)
    # A site administrator (set with the CLI): sees and moderates every room.
    is_admin = fields.BooleanField(default=False, db_default=False)

    class Meta:
        table = "users"

    def __repr__(self) -> str:  # never show the hash
        return f"<UserRow id={self.id}>"


class RoomRow(Model):
    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=100)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    deleted_at = fields.DatetimeField(null=True, db_index=True)
    # The room's last message sequence number, advanced under this row's lock.
    last_seq = fields.BigIntField(default=0, db_default=0)
    # "public", "private" or "direct" (services/access.py decides what each allows).
    visibility = fields.CharField(max_length=16, default="public", db_default="public")
    owner: fields.ForeignKeyNullableRelation[UserRow] = fields.ForeignKeyField(
        "chat.UserRow", related_name="owned_rooms", null=True, on_delete=fields.SET_NULL
    )
    # "<low user ID>:<high user ID>" for a direct room: the unique index keeps one per pair.
    direct_key = fields.CharField(max_length=64, null=True, unique=True)

    owner_id: int | None

    class Meta:
        table = "rooms"


class RoomMemberRow(Model):
    """A member of a room and their role there: "owner", "moderator" or "member"."""

    id = fields.BigIntField(primary_key=True)
    room: fields.ForeignKeyRelation[RoomRow] = fields.ForeignKeyField(
        "chat.RoomRow", related_name="members", on_delete=fields.CASCADE, db_index=False
    )
    user: fields.ForeignKeyRelation[UserRow] = fields.ForeignKeyField(
        "chat.UserRow", related_name="memberships", on_delete=fields.CASCADE, db_index=True
    )
    role = fields.CharField(max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)

    room_id: int
    user_id: int

    class Meta:
        table = "room_members"
        unique_together = (("room", "user"),)


class RoomBanRow(Model):
    """A user banned from a room until `until` (NULL: until lifted)."""

    id = fields.BigIntField(primary_key=True)
    room: fields.ForeignKeyRelation[RoomRow] = fields.ForeignKeyField(
        "chat.RoomRow", related_name="bans", on_delete=fields.CASCADE, db_index=False
    )
    user: fields.ForeignKeyRelation[UserRow] = fields.ForeignKeyField(
        "chat.UserRow", related_name="bans", on_delete=fields.CASCADE, db_index=False
    )
    until = fields.DatetimeField(null=True)
    reason = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    room_id: int
    user_id: int

    class Meta:
        table = "room_bans"
        unique_together = (("room", "user"),)


class RoomMuteRow(Model):
    """A user who may read a room but not post in it until `until` (NULL: until lifted)."""

    id = fields.BigIntField(primary_key=True)
    room: fields.ForeignKeyRelation[RoomRow] = fields.ForeignKeyField(
        "chat.RoomRow", related_name="mutes", on_delete=fields.CASCADE, db_index=False
    )
    user: fields.ForeignKeyRelation[UserRow] = fields.ForeignKeyField(
        "chat.UserRow", related_name="mutes", on_delete=fields.CASCADE, db_index=False
    )
    until = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    room_id: int
    user_id: int

    class Meta:
        table = "room_mutes"
        unique_together = (("room", "user"),)


class MessageRow(Model):
    id = fields.BigIntField(primary_key=True)
    room: fields.ForeignKeyRelation[RoomRow] = fields.ForeignKeyField(
        "chat.RoomRow", related_name="messages", on_delete=fields.CASCADE, db_index=False
    )
    user: fields.ForeignKeyRelation[UserRow] = fields.ForeignKeyField(
        "chat.UserRow", related_name="messages", on_delete=fields.CASCADE
    )
    # The author's name when the message was sent, so history needs no join.
    user_name = fields.CharField(max_length=64)
    text = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    client_message_id = fields.CharField(max_length=64, null=True)
    # 1, 2, 3... within the room, with no holes: receivers detect a missed message
    # by a jump in seq and back-fill it from here.
    seq = fields.BigIntField(default=0, db_default=0)
    # What the row is: a message (MESSAGE), or a change to message `target_id` that
    # took its place in the room's order (EDIT: `text` is the new text; DELETE). A
    # change is a row of its own so that it has an ID and a seq: recovery by ID and
    # the receivers' seq ordering carry edits and deletes like messages. The rows
    # also keep who changed what and when (an edit keeps the text it set).
    kind = fields.SmallIntField(default=0, db_default=0)
    target_id = fields.BigIntField(null=True)
    # On a message: when it was last edited, and when and by whom it was deleted
    # (its text stays, for moderators; history and recovery leave it out).
    edited_at = fields.DatetimeField(null=True)
    deleted_at = fields.DatetimeField(null=True)
    deleted_by_id = fields.BigIntField(null=True)

    room_id: int
    user_id: int

    class Meta:
        table = "messages"
        # History and recovery read "room R, IDs around X": keep that one index lookup.
        # Unread counts look up "my newest message in room R".
        indexes = (("room_id", "id"), ("room_id", "user_id", "seq"))
        # A resend with the same clientMessageId stores nothing new, on every host.
        unique_together = (("room", "user", "client_message_id"), ("room", "seq"))


class ReadMarkerRow(Model):
    """How far a user has read a room: message `last_read_id`, whose seq is `last_read_seq`."""

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[UserRow] = fields.ForeignKeyField(
        "chat.UserRow", related_name="read_markers", on_delete=fields.CASCADE, db_index=False
    )
    room: fields.ForeignKeyRelation[RoomRow] = fields.ForeignKeyField(
        "chat.RoomRow", related_name="read_markers", on_delete=fields.CASCADE, db_index=True
    )
    last_read_id = fields.BigIntField()
    last_read_seq = fields.BigIntField()
    updated_at = fields.DatetimeField(auto_now=True)

    room_id: int
    user_id: int

    class Meta:
        table = "read_markers"
        unique_together = (("user", "room"),)


class SessionRow(Model):
    """A login: the token's `sid`. Ended sessions stay (ended_at set) until pruned."""

    id = fields.CharField(max_length=32, primary_key=True)
    user: fields.ForeignKeyRelation[UserRow] = fields.ForeignKeyField(
        "chat.UserRow", related_name="sessions", on_delete=fields.CASCADE, db_index=True
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    last_seen_at = fields.DatetimeField()
    # The expiry of the newest token of this session (a refresh moves it).
    expires_at = fields.DatetimeField()
    ended_at = fields.DatetimeField(null=True)
    user_agent = fields.CharField(max_length=256, null=True)

    user_id: int

    class Meta:
        table = "sessions"


class ServerSecret(Model):
    """Values generated once and shared by every worker and host on this database."""

    name = fields.CharField(max_length=64, primary_key=True)
    value = fields.CharField(max_length=255)

    class Meta:
        table = "server_secrets"


class SigningKeyRow(Model):
    """A token signing key (`kid` in the JWT header). `rotate-secret` adds one and sets
    the others' `retires_at`; the newest row without it signs. The row LEGACY_KID
    (security.py) holds no secret: it stands for tokens without a kid (their secret is
    CHATROOM_JWT_SECRET or server_secrets' jwt_secret) and only carries their end."""

    kid = fields.CharField(max_length=32, primary_key=True)
    secret = fields.CharField(max_length=255)
    created_at = fields.DatetimeField(auto_now_add=True)
    retires_at = fields.DatetimeField(null=True)

    class Meta:
        table = "signing_keys"

    def __repr__(self) -> str:  # never show the secret
        return f"<SigningKeyRow kid={self.kid}>"
