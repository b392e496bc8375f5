"""fingerprint() and verb(): the shape of a statement, whatever its literals and driver."""

from __future__ import annotations

import pytest

from fastprof.queries import DATA_VERBS, fingerprint, params_text, short_sql, verb


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM t WHERE id = 1", "select * from t where id = ?"),
        ("select *  from t\n where id = ?", "select * from t where id = ?"),
        ("SELECT * FROM t WHERE id = $1", "select * from t where id = ?"),
        ("SELECT * FROM t WHERE id = %s", "select * from t where id = ?"),
        ("SELECT * FROM t WHERE id = %(id)s", "select * from t where id = ?"),
        ("SELECT * FROM t WHERE id = :id", "select * from t where id = ?"),
        ("SELECT * FROM t WHERE name = 'O''Brien'", "select * from t where name = ?"),
        ("SELECT * FROM t WHERE x = -2.5e3", "select * from t where x = ?"),
        ("SELECT * FROM t WHERE id IN (1, 2, 3)", "select * from t where id in (?)"),
        ("SELECT * FROM t WHERE id IN ($1, $2)", "select * from t where id in (?)"),
        ("SELECT * FROM t WHERE id in (?,?,?,?)", "select * from t where id in (?)"),
        ("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')", "insert into t (a, b) values (?)"),
        ("INSERT INTO t (a, b) VALUES ($1, $2)", "insert into t (a, b) values (?)"),
        ("SELECT 1; -- trailing comment", "select ?"),
        ("/* hint */ SELECT a FROM t", "select a from t"),
        ("SELECT a FROM t WHERE b = '-- not a comment'", "select a from t where b = ?"),
        ("SELECT a FROM t WHERE b = '/* nor this */'", "select a from t where b = ?"),
        ("SELECT t1.a FROM table2 t1", "select t1.a from table2 t1"),
        ('SELECT "col1" FROM "t2"', 'select "col1" from "t2"'),
        ("SELECT * FROM t WHERE $1::INTEGER = t.id", "select * from t where ?::integer = t.id"),
        ("SELECT * FROM t LIMIT 5 OFFSET 10", "select * from t limit ? offset ?"),
    ],
)
def test_fingerprint(sql: str, expected: str) -> None:
    assert fingerprint(sql) == expected


def test_literal_and_placeholder_forms_share_a_fingerprint() -> None:
    shapes = {
        fingerprint("SELECT name FROM author WHERE id = 7"),
        fingerprint("SELECT name FROM author WHERE id = ?"),
        fingerprint("select name\nfrom author\nwhere id = $1 -- by id"),
    }
    assert len(shapes) == 1


def test_different_statements_keep_different_fingerprints() -> None:
    assert fingerprint("SELECT a FROM t WHERE x = 1") != fingerprint("SELECT b FROM t WHERE x = 1")
    assert fingerprint("SELECT a FROM t WHERE x = 1") != fingerprint("SELECT a FROM u WHERE x = 1")


def test_fingerprint_is_cached_by_raw_text() -> None:
    sql = "SELECT cached FROM t WHERE id = 123456789"
    fingerprint(sql)
    before = fingerprint.cache_info().hits
    fingerprint(sql)
    assert fingerprint.cache_info().hits == before + 1


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", "select"),
        ("  select * from t", "select"),
        ("(SELECT a FROM t) UNION (SELECT a FROM u)", "select"),
        ("/* c */ INSERT INTO t VALUES (1)", "insert"),
        ("-- c\nUPDATE t SET a = 1", "update"),
        ("DELETE FROM t", "delete"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "select"),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "insert"),
        ("BEGIN", "begin"),
        ("PRAGMA table_info(t)", "pragma"),
        ("", ""),
    ],
)
def test_verb(sql: str, expected: str) -> None:
    assert verb(sql) == expected


def test_data_verbs_leave_out_transaction_control() -> None:
    assert {"select", "insert", "update", "delete"} <= DATA_VERBS
    assert not {"begin", "commit", "rollback", "savepoint", "set", "pragma"} & DATA_VERBS


def test_evidence_text_is_bounded() -> None:
    assert short_sql("SELECT  a\n  FROM t") == "SELECT a FROM t"
    long = "SELECT " + ", ".join(f"c{i}" for i in range(500)) + " FROM t"
    assert len(short_sql(long)) == 600 and short_sql(long).endswith("...")
    assert params_text((1, "a")) == "(1, 'a')"
    assert len(params_text(list(range(1000)))) == 200
