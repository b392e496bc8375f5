"""A FastAPI app that commits each pitfall of the tuning guides next to its fixed twin.

Every pitfall lives under ``/pitfall/<topic>/...`` and its fix(es) under the same path below
``/fixed/``; both return the same body, so the only difference a profiler can see is how the
work was done. ``demo_app.catalog.PAIRS`` lists the pairs with the guide each comes from and the
finding ``fastprof scan`` should report; ``GET /`` serves the same list.

Run it with ``uvicorn demo_app.main:app`` (SQLite, seeded at startup), or with
``DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test`` and ``REDIS_URL=redis://127.0.0.1:6379``
for PostgreSQL (asyncpg, psycopg) and Redis. ``demo_app.main:fixed_app`` is the same app with
the timing middleware written as pure ASGI instead of ``BaseHTTPMiddleware``.
"""
