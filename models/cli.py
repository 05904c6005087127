"""`appliance models list|verify|fetch`: what IT runs to see and check the weights (issue #5).

Each returns the command's exit status; `appliance/cli.py` calls them lazily so
the CLI starts without importing the registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from appliance.settings import Settings
from models import registry
from models.specs import MODELS, ModelSpec


def _state(spec: ModelSpec, checks: list[registry.FileCheck]) -> str:
    states = {c.state for c in checks}
    if "changed" in states:
        return "changed"
    if not checks or "missing" in states:
        return "missing" if spec.required else "absent (optional)"
    return "verified"


def describe(spec: ModelSpec, models_dir: Path | None) -> dict[str, Any]:
    """One model as `list --json` prints it."""
    try:
        folder = registry.model_folder(spec, models_dir)
        checks = registry.check(spec, models_dir)
    except registry.ModelUnavailable:
        folder, checks = None, []
    return {
        "name": spec.name,
        "task": spec.task,
        "source": spec.source,
        "packages": [p.requirement for p in spec.packages],
        "derived_from": spec.derived_from or None,
        "licence": spec.licence,
        "loader": spec.loader,
        "required": spec.required,
        "folder": str(folder) if folder else None,
        "state": _state(spec, checks),
        "size": sum(c.size for c in checks),
        "files": [
            {"name": c.name, "sha256": c.pinned or None, "size": c.size, "state": c.state}
            for c in checks
        ],
    }


def list_models(settings: Settings, as_json: bool) -> int:
    models_dir = settings.ai.models_dir
    rows = [describe(spec, models_dir) for spec in MODELS]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return 0
    header = ("NAME", "TASK", "SOURCE", "LICENCE", "FILES", "SIZE")
    table = [header] + [_row(spec, row) for spec, row in zip(MODELS, rows, strict=True)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        click.echo("  ".join([*cells, line[-1]]).rstrip())
    return 0


def _row(spec: ModelSpec, row: dict[str, Any]) -> tuple[str, ...]:
    verified = sum(f["state"] == "verified" for f in row["files"])
    files = f"{verified}/{len(row['files'])} {row['state']}"
    size = f"{row['size'] / 1e6:.1f} MB" if row["size"] else "-"
    return (spec.name, spec.task, spec.source_label, spec.licence, files, size)


def verify_models(settings: Settings) -> int:
    """Rehash every file; exit 1 naming each file that is missing or changed."""
    registry.forget_digests()
    failed = 0
    for spec in MODELS:
        try:
            checks = registry.check(spec, settings.ai.models_dir)
        except registry.ModelUnavailable as exc:
            click.echo(f"MISSING  {spec.name}: {exc}")
            failed += 1
            continue
        bad = [c for c in checks if c.state != "verified"]
        if not checks and spec.required:
            click.echo(f"MISSING  {spec.name}: no pinned files")
            failed += 1
        for item in bad:
            if item.state == "changed":
                registry.log.error("model %s: weight file %s changed", spec.name, item.path)
            elif not spec.required:
                continue
            click.echo(f"{item.state.upper():8} {spec.name}: {item.path}")
            failed += 1
        if checks and not bad:
            click.echo(f"OK       {spec.name}: {len(checks)} file(s)")
        elif not checks and not spec.required:
            click.echo(f"ABSENT   {spec.name}: optional, not installed")
    if failed:
        click.echo(f"{failed} problem(s); {registry.FIX}", err=True)
    return 1 if failed else 0


def fetch_models(settings: Settings, source: Path | None) -> int:
    from models.fetch import FetchError, fetch

    try:
        fetch(settings.ai.models_dir, source, echo=click.echo)
    except (FetchError, registry.ModelUnavailable, registry.ModelTampered) as exc:
        click.echo(f"models fetch failed: {exc}", err=True)
        return 1
    return 0
