"""Migrations: the models and the migrated schema agree, and upgrades keep the data."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from appliance import migrate
from appliance.migrate import _config
from appliance.records import Base, User
from appliance.store import Store
from tests.appliance.helpers import org_and_job


def test_migrated_schema_matches_the_models(store: Store) -> None:
    """A model change without its migration fails here (autogenerate finds no difference)."""
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_from_the_first_revision_keeps_rows(store: Store) -> None:
    """A box made at revision 0001 with users upgrades to head and keeps them, with defaults."""
    with store.transaction() as session:
        org_and_job(session)
    with store.engine.begin() as conn:
        command.downgrade(_config(conn), "0001")
    assert migrate.current_revision(store.engine) == "0001"
    migrate.upgrade(store.engine)
    with store.session() as session:
        user = session.scalars(select(User)).one()
        assert (user.username, user.failed_logins, user.auth_source) == ("hr1", 0, "local")
