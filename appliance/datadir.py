"""Creating a data dir: its folders, keys, schema and (with --demo) the demo hospital."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from appliance import migrate
from appliance.errors import DataDirError
from appliance.keys import create_keys
from appliance.records import BoxInfo, new_uuid
from appliance.settings import Settings
from appliance.store import DATA_DIR_ENTRIES, Store

FOLDERS = ("blobs", "keys", "redis", "certs", "gnupg", "logs")


@dataclass(frozen=True)
class Initialised:
    store: Store
    demo_logins: list[tuple[str, str, str, str]]
    """(role, username, password, TOTP secret) for each demo account; empty unless --demo."""


def check_empty(data_dir: Path) -> None:
    """`init` and `restore` never write into a dir that holds anything."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise DataDirError(
            f"{data_dir} is not empty; refusing to initialise over it (nothing was changed)"
        )


def make_folders(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    for name in FOLDERS:
        (data_dir / name).mkdir(mode=0o700, exist_ok=True)


def init_data_dir(settings: Settings, passphrase: str, demo: bool = False) -> Initialised:
    """Keys first (the database key comes from them), then the schema, then demo data."""
    data_dir = settings.data_dir
    check_empty(data_dir)
    make_folders(data_dir)
    keys = create_keys(data_dir, passphrase, settings.unseal_key_file)
    store = Store(data_dir, keys)
    migrate.upgrade(store.engine)
    with store.transaction() as session:
        session.add(BoxInfo(id=1, box_id=new_uuid(), demo=demo))
    logins: list[tuple[str, str, str, str]] = []
    if demo:
        from appliance.demo import seed_demo_hospital

        logins = seed_demo_hospital(store)
    return Initialised(store=store, demo_logins=logins)


def unexpected_entries(data_dir: Path) -> list[str]:
    """Anything at the data dir's top level the layout does not name (issue #2, item 12)."""
    allowed = set(DATA_DIR_ENTRIES) | {"enclave.db-wal", "enclave.db-shm"}
    return sorted(p.name for p in data_dir.iterdir() if p.name not in allowed)
