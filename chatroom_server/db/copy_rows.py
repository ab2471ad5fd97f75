"""Copying every row of one database into another, empty one (`copy-data`, SPEC 14).

Generic over the models: every model of the app is copied, each after the models
its foreign keys point to, so a model added later is copied with no change here
(tests/process/test_copy_data.py fails when one is left out or has no rows in
its fixture). Rows keep their primary keys, and so every ID, seq and cursor
stays what it was; PostgreSQL's sequences then restart after the largest copied
ID, or the next insert would collide with a copied row.

Reading is one transaction on the source (one snapshot: REPEATABLE READ on
PostgreSQL, one read transaction on SQLite), in pages of BATCH rows by primary
key, so memory stays bounded whatever the size of a table. Writing is one
transaction on the target: a copy that fails leaves it empty, to run again.
"""

from __future__ import annotations

from collections.abc import Callable

from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import BaseORMException
from tortoise.fields import BigIntField, IntField, SmallIntField
from tortoise.models import Model
from tortoise.transactions import in_transaction

from ..errors import ConfigError, StorageError
from . import APP_LABEL, MODELS_MODULE, connection_url

BATCH = 1000
# While a big table copies, a progress line every this many rows.
REPORT_EVERY = 10 * BATCH
SOURCE, TARGET = "copy_source", "copy_target"

Progress = Callable[[str], None]


def models_in_order() -> list[type[Model]]:
    """Every model of the app, each after those its foreign keys point to."""
    ordered: list[type[Model]] = []

    def visit(model: type[Model], path: tuple[type[Model], ...]) -> None:
        if model in ordered:
            return
        if model in path:
            cycle = " -> ".join(m._meta.db_table for m in (*path, model))
            raise ConfigError(f"copy-data cannot order tables with a foreign key cycle: {cycle}.")
        meta = model._meta
        if meta.m2m_fields:
            raise ConfigError(
                f"copy-data does not copy many-to-many tables yet ({meta.db_table}): "
                "give the link a model of its own."
            )
        for name in sorted(meta.fk_fields | meta.o2o_fields):
            related: type[Model] = meta.fields_map[name].related_model  # type: ignore[attr-defined]
            if related is not model:  # a row pointing at its own table: pk order
                visit(related, (*path, model))
        ordered.append(model)

    for model in sorted(Tortoise.apps[APP_LABEL].values(), key=lambda m: m._meta.db_table):
        visit(model, ())
    return ordered


async def open_both(source_url: str, target_url: str) -> None:
    """The ORM's two connections, and its models' metadata (fields, keys, tables)."""
    config = {
        "connections": {
            SOURCE: connection_url(source_url),
            TARGET: connection_url(target_url),
        },
        "apps": {APP_LABEL: {"models": [MODELS_MODULE], "default_connection": TARGET}},
        "use_tz": True,
        "timezone": "UTC",
    }
    await Tortoise.init(config=config)


# Tables of the target that are not the models': the migrations' own record.
OWN_TABLES = frozenset({"tortoise_migrations"})
TABLES_QUERY = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    "postgres": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
}


async def target_tables() -> list[str]:
    """Every table of the target (in its current schema on PostgreSQL)."""
    target = connections.get(TARGET)
    _, rows = await target.execute_query(TABLES_QUERY[target.capabilities.dialect])
    return sorted(str(row[0]) for row in rows)


async def foreign_tables() -> list[str]:
    """The target's tables that are not chatroom-server's: not a database to copy into."""
    ours = {model._meta.db_table for model in models_in_order()} | OWN_TABLES
    return [table for table in await target_tables() if table not in ours]


async def tables_with_rows() -> list[str]:
    """The target's tables that have a row (the copy goes only into an empty database);
    a table not created yet (the target not migrated yet) has none."""
    target = connections.get(TARGET)
    existing = set(await target_tables())
    full = []
    for model in models_in_order():
        table = model._meta.db_table
        if table not in existing:
            continue
        _, rows = await target.execute_query(f'SELECT 1 FROM "{table}" LIMIT 1')
        if rows:
            full.append(table)
    return full


async def copy_rows(progress: Progress) -> int:
    """Copy every model's rows from the source to the target; the number of rows."""
    models = models_in_order()
    total = 0
    async with in_transaction(SOURCE) as src, in_transaction(TARGET) as dst:
        if src.capabilities.dialect == "postgres":
            # The first statement of the transaction: every page from one snapshot.
            await src.execute_script("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for model in models:
            total += await _copy_model(model, src, dst, progress)
        if dst.capabilities.dialect == "postgres":
            await _restart_sequences(models, dst)
    return total


async def _copy_model(
    model: type[Model], src: BaseDBAsyncClient, dst: BaseDBAsyncClient, progress: Progress
) -> int:
    """Plain SQL on each side in its own dialect (the ORM's queries take the default
    connection's), the values converted by the model's fields: read as the ORM reads
    them, written as it writes them."""
    meta = model._meta
    table = meta.db_table
    names = list(meta.fields_db_projection)  # every field that is a column
    fields = [meta.fields_map[name] for name in names]
    columns = [meta.fields_db_projection[name] for name in names]
    pk_at = names.index(meta.pk_attr)
    first, after = _select_sql(table, columns, columns[pk_at], src)
    insert = _insert_sql(table, columns, dst)
    copied, last = 0, None
    while True:
        try:
            _, rows = await (
                src.execute_query(first) if last is None else src.execute_query(after, [last])
            )
            if not rows:
                break
            # Passing the class, not a row: no auto_now field stamps "now" over the value.
            values = [
                [
                    f.to_db_value(f.to_python_value(v), model)
                    for f, v in zip(fields, row, strict=True)
                ]
                for row in rows
            ]
            await dst.execute_many(insert, values)
        except (BaseORMException, ValueError, OSError) as exc:
            raise StorageError(f"Copying {table} failed: {_first_line(exc)}.") from exc
        copied += len(rows)
        last = rows[-1][pk_at]
        if copied % REPORT_EVERY == 0:
            progress(f"{table}: {copied} copied so far")
        if len(rows) < BATCH:
            break
    progress(f"{table}: {copied} copied")
    return copied


def _select_sql(table: str, columns: list[str], pk: str, src: BaseDBAsyncClient) -> tuple[str, str]:
    """The first page, and the page after a key (keyset paging: no OFFSET to rescan)."""
    quoted = ", ".join(f'"{c}"' for c in columns)
    select = f'SELECT {quoted} FROM "{table}"'
    order = f' ORDER BY "{pk}" LIMIT {int(BATCH)}'
    mark = "$1" if src.capabilities.dialect == "postgres" else "?"
    return select + order, f'{select} WHERE "{pk}" > {mark}{order}'


def _insert_sql(table: str, columns: list[str], dst: BaseDBAsyncClient) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    if dst.capabilities.dialect == "postgres":
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    else:
        marks = ", ".join("?" for _ in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ({marks})'


async def _restart_sequences(models: list[type[Model]], dst: BaseDBAsyncClient) -> None:
    """Each generated ID's sequence continues after the largest copied ID (SQLite's
    AUTOINCREMENT does that by itself on an insert with an explicit ID)."""
    for model in models:
        pk = model._meta.pk
        if not (pk.generated and isinstance(pk, (SmallIntField, IntField, BigIntField))):
            continue
        table, column = model._meta.db_table, model._meta.db_pk_column
        await dst.execute_query(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'),"
            f' COALESCE((SELECT MAX("{column}") FROM "{table}"), 0) + 1, false)'
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__
