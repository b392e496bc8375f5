"""Raw SQLite drivers: sqlite3 (``def`` endpoints, in the threadpool) and aiosqlite (async).

The shared sqlite3 connection is opened lazily by the first request that needs it and kept
(a common pattern; the detector sees it outlive its request and does not report it). The
aiosqlite connection is opened in the lifespan. Positives: query loops (execute and cursor,
SELECT and INSERT), identical queries, a connection opened per request. Negatives: ``IN``
batches, a JOIN, ``executemany``, three pages, two unrelated queries, the shared connections.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
from fastapi import FastAPI

from tests.corpus import Case

AUTHORS = 8
BOOKS_PER_AUTHOR = 3

AUTHOR = "SELECT id, name FROM author WHERE id = ?"
BOOKS_OF = "SELECT id, title FROM book WHERE author_id = ?"
AUTHOR_OF_BOOK = "SELECT a.name FROM author a JOIN book b ON b.author_id = a.id WHERE b.id = ?"
INSERT_EVENT = "INSERT INTO event (name) VALUES (?)"


def build() -> FastAPI:
    path = os.path.join(tempfile.mkdtemp(prefix="fastprof-corpus-sqlite-"), "books.db")
    with sqlite3.connect(path) as setup:
        setup.executescript(
            """
            CREATE TABLE author (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
            CREATE TABLE book (id INTEGER PRIMARY KEY, title TEXT, author_id INTEGER);
            CREATE TABLE event (id INTEGER PRIMARY KEY, name TEXT);
            """
        )
        setup.executemany(
            "INSERT INTO author (id, name) VALUES (?, ?)",
            [(a, f"author {a}") for a in range(1, AUTHORS + 1)],
        )
        setup.executemany(
            "INSERT INTO book (title, author_id) VALUES (?, ?)",
            [(f"book {a}.{b}", a) for a in range(1, AUTHORS + 1) for b in range(BOOKS_PER_AUTHOR)],
        )
    setup.close()
    shared: dict[str, Any] = {}
    lock = threading.Lock()

    def db() -> sqlite3.Connection:
        # Opened on first use, then kept for every later request.
        with lock:
            if "conn" not in shared:
                shared["conn"] = sqlite3.connect(path, check_same_thread=False)
            conn: sqlite3.Connection = shared["conn"]
            return conn

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.adb = await aiosqlite.connect(path)
        try:
            yield
        finally:
            await app.state.adb.close()
            if "conn" in shared:
                shared.pop("conn").close()

    app = FastAPI(lifespan=lifespan)

    # --- sqlite3 --------------------------------------------------------------------------

    @app.get("/sqlite3/loop")
    def sqlite3_loop() -> dict[str, int]:
        conn = db()
        found = 0
        for author_id in range(1, AUTHORS + 1):
            rows = conn.execute(BOOKS_OF, (author_id,)).fetchall()  # expect: n_plus_one
            found += len(rows)
        return {"books": found}

    @app.get("/sqlite3/cursor-loop")
    def sqlite3_cursor_loop() -> dict[str, int]:
        cursor = db().cursor()
        names = 0
        for book_id in range(1, 13):
            cursor.execute(AUTHOR_OF_BOOK, (book_id,))  # expect: n_plus_one
            names += len(cursor.fetchall())
        cursor.close()
        return {"names": names}

    @app.get("/sqlite3/literal-loop")
    def sqlite3_literal_loop() -> dict[str, int]:
        # Values pasted into the SQL text: one statement text per id, one fingerprint.
        conn = db()
        found = 0
        for author_id in range(1, AUTHORS + 1):
            sql = f"SELECT name FROM author WHERE id = {author_id}"
            found += len(conn.execute(sql).fetchall())  # expect: n_plus_one
        return {"found": found}

    @app.get("/sqlite3/in-batch")
    def sqlite3_in_batch() -> dict[str, int]:
        ids = list(range(1, AUTHORS + 1))
        marks = ", ".join("?" for _ in ids)
        sql = f"SELECT author_id, title FROM book WHERE author_id IN ({marks})"
        rows = db().execute(sql, ids).fetchall()
        return {"books": len(rows)}

    @app.get("/sqlite3/join")
    def sqlite3_join() -> dict[str, int]:
        sql = "SELECT a.name, b.title FROM author a JOIN book b ON b.author_id = a.id"
        rows = db().execute(sql).fetchall()
        return {"rows": len(rows)}

    @app.post("/sqlite3/executemany")
    def sqlite3_executemany() -> dict[str, int]:
        conn = db()
        with lock:
            conn.executemany(INSERT_EVENT, [(f"e{i}",) for i in range(20)])
            conn.commit()
        return {"inserted": 20}

    @app.post("/sqlite3/insert-loop")
    def sqlite3_insert_loop() -> dict[str, int]:
        conn = db()
        with lock:
            for i in range(10):
                conn.execute(INSERT_EVENT, (f"looped {i}",))  # expect: n_plus_one
            conn.commit()
        return {"inserted": 10}

    @app.get("/sqlite3/paginate")
    def sqlite3_paginate() -> dict[str, int]:
        conn = db()
        seen = 0
        for page in range(3):
            sql = "SELECT id, title FROM book ORDER BY id LIMIT ? OFFSET ?"
            rows = conn.execute(sql, (5, page * 5)).fetchall()
            seen += len(rows)
        return {"seen": seen}

    @app.get("/sqlite3/two-queries")
    def sqlite3_two_queries() -> dict[str, int]:
        conn = db()
        authors = conn.execute("SELECT id, name FROM author").fetchall()
        books = conn.execute("SELECT id FROM book WHERE author_id = ?", (1,)).fetchall()
        return {"authors": len(authors), "books": len(books)}

    @app.get("/sqlite3/duplicate")
    def sqlite3_duplicate() -> dict[str, int]:
        conn = db()
        first = conn.execute(AUTHOR, (3,)).fetchone()
        again = conn.execute(AUTHOR, (3,)).fetchone()  # expect: duplicate_query
        return {"same": int(first == again)}

    @app.get("/sqlite3/loop-repeats")
    def sqlite3_loop_repeats() -> dict[str, int]:
        # The author of every book: an N+1 whose ids repeat (a duplicate too).
        conn = db()
        names = set()
        for (author_id,) in conn.execute("SELECT author_id FROM book").fetchall():
            row = conn.execute(AUTHOR, (author_id,)).fetchone()  # expect: n_plus_one
            names.add(row[1])
        return {"authors": len(names)}

    @app.get("/sqlite3/connect-per-request")
    def sqlite3_connect_per_request() -> dict[str, int]:
        conn = sqlite3.connect(path)  # expect: connection_per_request
        try:
            count = conn.execute("SELECT count(*) FROM book").fetchone()[0]
        finally:
            conn.close()
        return {"books": count}

    @app.get("/sqlite3/shared")
    def sqlite3_shared() -> dict[str, int]:
        return {"books": db().execute("SELECT count(*) FROM book").fetchone()[0]}

    # --- aiosqlite ------------------------------------------------------------------------

    @app.get("/aiosqlite/loop")
    async def aiosqlite_loop() -> dict[str, int]:
        adb: aiosqlite.Connection = app.state.adb
        found = 0
        for author_id in range(1, AUTHORS + 1):
            async with adb.execute(BOOKS_OF, (author_id,)) as cursor:  # expect: n_plus_one
                found += len(await cursor.fetchall())
        return {"books": found}

    @app.get("/aiosqlite/fetchall-loop")
    async def aiosqlite_fetchall_loop() -> dict[str, int]:
        adb: aiosqlite.Connection = app.state.adb
        found = 0
        for author_id in range(1, AUTHORS + 1):
            rows = await adb.execute_fetchall(AUTHOR, (author_id,))  # expect: n_plus_one
            found += len(list(rows))
        return {"found": found}

    @app.get("/aiosqlite/in-batch")
    async def aiosqlite_in_batch() -> dict[str, int]:
        adb: aiosqlite.Connection = app.state.adb
        ids = list(range(1, AUTHORS + 1))
        marks = ", ".join("?" for _ in ids)
        sql = f"SELECT title FROM book WHERE author_id IN ({marks})"
        rows = await adb.execute_fetchall(sql, ids)
        return {"books": len(list(rows))}

    @app.post("/aiosqlite/executemany")
    async def aiosqlite_executemany() -> dict[str, int]:
        adb: aiosqlite.Connection = app.state.adb
        await adb.executemany(INSERT_EVENT, [(f"a{i}",) for i in range(20)])
        await adb.commit()
        return {"inserted": 20}

    @app.get("/aiosqlite/duplicate")
    async def aiosqlite_duplicate() -> dict[str, int]:
        adb: aiosqlite.Connection = app.state.adb
        first = await adb.execute_fetchall(BOOKS_OF, (2,))
        again = await adb.execute_fetchall(BOOKS_OF, (2,))  # expect: duplicate_query
        return {"rows": len(list(first)) + len(list(again))}

    @app.get("/aiosqlite/paginate")
    async def aiosqlite_paginate() -> dict[str, int]:
        adb: aiosqlite.Connection = app.state.adb
        seen = 0
        for page in range(3):
            sql = "SELECT id FROM book ORDER BY id LIMIT 5 OFFSET ?"
            rows = await adb.execute_fetchall(sql, (page * 5,))
            seen += len(list(rows))
        return {"seen": seen}

    @app.get("/aiosqlite/connect-per-request")
    async def aiosqlite_connect_per_request() -> dict[str, int]:
        async with aiosqlite.connect(path) as adb:  # expect: connection_per_request
            rows = await adb.execute_fetchall("SELECT count(*) FROM author")
        return {"authors": next(iter(rows))[0]}

    @app.get("/aiosqlite/shared")
    async def aiosqlite_shared() -> dict[str, int]:
        adb: aiosqlite.Connection = app.state.adb
        rows = await adb.execute_fetchall("SELECT count(*) FROM author")
        return {"authors": next(iter(rows))[0]}

    return app


N1 = frozenset({"n_plus_one"})
DUP = frozenset({"duplicate_query"})
CONN = frozenset({"connection_per_request"})

CASES = [
    Case("/sqlite3/shared"),
    Case("/sqlite3/loop", N1),
    Case("/sqlite3/cursor-loop", N1),
    Case("/sqlite3/literal-loop", N1),
    Case("/sqlite3/in-batch"),
    Case("/sqlite3/join"),
    Case("/sqlite3/executemany", method="POST"),
    Case("/sqlite3/insert-loop", N1, method="POST"),
    Case("/sqlite3/paginate"),
    Case("/sqlite3/two-queries"),
    Case("/sqlite3/duplicate", DUP),
    Case("/sqlite3/loop-repeats", N1, ignore=DUP),
    Case("/sqlite3/connect-per-request", CONN),
    Case("/aiosqlite/loop", N1),
    Case("/aiosqlite/fetchall-loop", N1),
    Case("/aiosqlite/in-batch"),
    Case("/aiosqlite/executemany", method="POST"),
    Case("/aiosqlite/duplicate", DUP),
    Case("/aiosqlite/paginate"),
    Case("/aiosqlite/connect-per-request", CONN),
    Case("/aiosqlite/shared"),
]
