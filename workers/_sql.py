"""A batch of rows as one JSON parameter, read back as a table in each database's
own JSON table function: set-based statements over a batch cost one parameter,
not one parameter binding per row (which costs ten times the writes themselves)."""

from __future__ import annotations

__all__ = ["json_rows"]


def json_rows(dialect: str, fields: dict[str, str]) -> str:
    """A FROM item ``j`` with ``fields`` (name: SQL type) plus ``n``, the row's index
    in the list, read from the JSON parameter ``:batch`` (a list of objects).

    Only this package's constant field names reach the SQL text; values are bound.
    """
    if dialect == "postgresql":
        typed = ", ".join(f"{name} {kind}" for name, kind in fields.items())
        return (
            f"(SELECT r.*, e.n FROM jsonb_array_elements(CAST(:batch AS jsonb)) "
            f"WITH ORDINALITY AS e(value, n), jsonb_to_record(e.value) AS r({typed})) AS j"
        )
    picked = ", ".join(f"json_extract(value, '$.{name}') AS {name}" for name in fields)
    return f"(SELECT {picked}, key AS n FROM json_each(:batch)) AS j"
