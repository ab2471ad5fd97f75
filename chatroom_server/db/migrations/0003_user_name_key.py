from typing import Any

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


async def assign_name_keys(apps: Any, schema_editor: Any) -> None:
    """Give each user the key of their name; the first (lowest ID) user of a key keeps it.

    Later users whose names already collide get NULL: they keep their name and
    their login, and only names signed up from now on are refused.
    """
    from chatroom_server.names import name_key

    client = schema_editor.client
    rows = await client.execute_query_dict("SELECT id, user_name FROM users ORDER BY id")
    taken: set[str] = set()
    updates: list[list[Any]] = []
    for row in rows:
        key = name_key(row["user_name"])
        if key not in taken:
            taken.add(key)
            updates.append([key, row["id"]])
    if not updates:
        return
    if client.capabilities.dialect == "sqlite":
        sql = "UPDATE users SET name_key = ? WHERE id = ?"
    else:
        sql = "UPDATE users SET name_key = $1 WHERE id = $2"
    await client.execute_many(sql, updates)


class Migration(migrations.Migration):
    dependencies = [("chat", "0002_message_seq_and_client_ids")]

    initial = False

    operations = [
        ops.AddField(
            model_name="UserRow",
            name="name_key",
            field=fields.CharField(max_length=64, null=True, unique=True),
        ),
        ops.RunPython(assign_name_keys, reverse_code=ops.RunPython.noop),
    ]
