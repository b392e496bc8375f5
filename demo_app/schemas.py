"""Response models. Every route declares one, except the slow-serialisation pitfall."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class BookBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    year: int


class AuthorBooks(BaseModel):
    id: int
    name: str
    books: list[BookBrief]


class CustomerOut(BaseModel):
    id: int
    email: str


class AuthorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    country: str
    born: int


class CatalogBook(BaseModel):
    id: int
    title: str
    author_id: int
    author: str
    year: int
    pages: int
    price_cents: int
    summary: str


class Catalog(BaseModel):
    count: int
    books: list[CatalogBook]


class ReportRow(BaseModel):
    author_id: int
    name: str
    books: int
    total_price_cents: int


class Report(BaseModel):
    """The ten authors with the most books: an aggregate read worth caching."""

    rows: list[ReportRow]


class Slept(BaseModel):
    seconds: float


class Primes(BaseModel):
    below: int
    count: int


class Rates(BaseModel):
    base: str
    rates: dict[str, float]
