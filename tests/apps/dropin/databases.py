"""Two database dataclasses, shared by the structured-config pattern apps."""

from dataclasses import dataclass


@dataclass
class SQLite:
    driver: str = "sqlite"
    path: str = "app.db"


@dataclass
class Postgres:
    driver: str = "postgres"
    host: str = "localhost"
    port: int = 5432
    user: str = "admin"
