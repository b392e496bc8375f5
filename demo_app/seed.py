"""Deterministic demo data: 300 authors with 3-10 books each (1,958 books, 4 MB), and 600,000
customers for the index pair (``email`` has an index, ``email_plain`` holds the same values and
has none; about 60 MB in SQLite).

The same rows on every run and every database, so a pitfall served from SQLite and its twin
served from PostgreSQL (or a cache filled by another process) return identical bodies.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from demo_app.models import Author, Base, Book

AUTHORS = 300
SUMMARY_WORDS = 300
#: Bump when the data or the tables change: caches and the PostgreSQL schema are keyed on it.
DATA_VERSION = 4
PG_SCHEMA = f"fastprof_demo_v{DATA_VERSION}"

_COUNTRIES = ("Chile", "Ghana", "Iceland", "Japan", "Kenya", "Norway", "Peru", "Portugal")
_FIRST = ("Ada", "Bram", "Chiara", "Dmitri", "Esi", "Farah", "Goran", "Hana", "Ines", "Jun")
_LAST = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Alves", "Novak", "Haddad", "Quispe")
_WORDS = (
    "river", "stone", "quiet", "engine", "harbor", "lantern", "orchard", "silver", "winter",
    "garden", "signal", "paper", "thunder", "meadow", "copper", "voyage", "candle", "forest",
    "mirror", "ember", "glacier", "archive", "compass", "whisper", "orbit", "tide", "falcon",
    "marble", "harvest",
)  # fmt: skip


def authors() -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "name": f"{_FIRST[i % len(_FIRST)]} {_LAST[(i * 7) % len(_LAST)]} {i}",
            "country": _COUNTRIES[(i * 5) % len(_COUNTRIES)],
            "born": 1900 + (i * 37) % 100,
        }
        for i in range(1, AUTHORS + 1)
    ]


def books() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for author_id in range(1, AUTHORS + 1):
        for _ in range(3 + (author_id * 7) % 8):
            book_id = len(rows) + 1
            rng = random.Random(book_id)
            words = [rng.choice(_WORDS) for _ in range(SUMMARY_WORDS)]
            rows.append(
                {
                    "id": book_id,
                    "author_id": author_id,
                    "title": " ".join(rng.sample(_WORDS, 3)).title(),
                    "year": 1950 + (book_id * 13) % 75,
                    "pages": 90 + (book_id * 31) % 700,
                    "price_cents": 499 + (book_id * 37) % 4500,
                    "summary": " ".join(words).capitalize() + ".",
                }
            )
    return rows


#: Big enough that a lookup by an unindexed column reads for tens of milliseconds (SQLite on
#: this machine: ~30 ms; PostgreSQL, parallel: ~35 ms), far above slow_query's 20 ms.
CUSTOMERS = 600_000
#: The customer the index pair looks up: the last one, so SQLite's scan reads every row.
LOOKUP_EMAIL = f"customer{CUSTOMERS}@example.com"
CUSTOMERS_DDL = (
    "CREATE TABLE IF NOT EXISTS customers "
    "(id INTEGER PRIMARY KEY, email VARCHAR(80) NOT NULL, email_plain VARCHAR(80) NOT NULL)"
)


def seed_customers(engine: Engine) -> None:
    """The index pair's table: each email twice, in a column with an index and one without."""
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": PG_SCHEMA})
            conn.execute(text(f"SET LOCAL search_path TO {PG_SCHEMA}"))
        conn.execute(text(CUSTOMERS_DDL))
        if conn.scalar(text("SELECT count(*) FROM customers WHERE id = 1")):
            return
        if postgres:
            conn.execute(
                text(
                    "INSERT INTO customers (id, email, email_plain) SELECT g, "
                    "'customer' || g || '@example.com', 'customer' || g || '@example.com' "
                    f"FROM generate_series(1, {CUSTOMERS}) AS g"
                )
            )
        else:
            raw: Any = conn.connection.dbapi_connection
            raw.executemany(
                "INSERT INTO customers (id, email, email_plain) VALUES (?, ?, ?)",
                (
                    (i, f"customer{i}@example.com", f"customer{i}@example.com")
                    for i in range(1, CUSTOMERS + 1)
                ),
            )
        conn.execute(text("CREATE INDEX ix_customers_email ON customers (email)"))
        if postgres:
            conn.execute(text("ANALYZE customers"))


def seed(engine: Engine) -> None:
    """Create the tables and fill them, once: safe to run from several processes at a time."""
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if postgres:
            # One process seeds; the others wait here, then find the rows already there.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": PG_SCHEMA})
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"))
            conn.execute(text(f"SET LOCAL search_path TO {PG_SCHEMA}"))
        Base.metadata.create_all(conn)
        if conn.scalar(select(func.count()).select_from(Author)):
            return
        conn.execute(insert(Author), authors())
        conn.execute(insert(Book), books())
