"""The ORM models: authors and their books (SQLAlchemy 2.0 style, usable sync and async)."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(AsyncAttrs, DeclarativeBase):
    """``AsyncAttrs`` gives ``await author.awaitable_attrs.books``: a lazy load under asyncio."""


class Author(Base):
    __tablename__ = "authors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(60))
    born: Mapped[int]
    # lazy="select" (the default): touching author.books runs one query per author.
    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.id")


class Book(Base):
    __tablename__ = "books"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    year: Mapped[int]
    pages: Mapped[int]
    price_cents: Mapped[int]
    # ~2 KB per book, and only the serialisation pair's catalog returns it: not loaded unless
    # asked for (undefer), so the N+1 pairs read the columns they return and nothing more.
    summary: Mapped[str] = mapped_column(Text, deferred=True)
    author: Mapped[Author] = relationship(back_populates="books")
