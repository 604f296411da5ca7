"""Typed settings.

``Settings`` holds the process-wide options read from ``RECSYS_*`` environment
variables (or a ``.env`` file). Each component keeps its own pydantic config
model next to its code; :func:`load_config` reads any of them from a JSON,
YAML or TOML file so a run is fully described by one file.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.errors import InputError

M = TypeVar("M", bound=BaseModel)


class Settings(BaseSettings):
    """Process-wide settings; every field can be set as ``RECSYS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    lake: str = "./lake"
    """Data lake URI: a local folder, ``memory://...`` or ``abfs://container/path``."""
    registry: str = "./registry"
    """Model registry URI; ``production.json`` in it names the bundle being served."""
    api_key: str | None = None
    """Key required in ``X-API-Key`` for writes and admin calls of the server."""
    live_store: str = "memory"
    """Live state of the server: ``memory`` (one replica) or ``redis://`` / ``rediss://``."""
    live_store_password: str | None = None
    """Access key of the Redis live store (kept out of the URL; from a Secret)."""
    event_log: str = "./serving-events"
    """Durable log of the ``memory`` live store (a folder of daily JSONL files, or one file)."""
    live_store_auth: Literal["key", "entra"] = "key"
    """How the server and the compaction authenticate to Redis: the key above, or Entra ID."""
    log_level: str = "INFO"


def load_config(path: str | Path | None, model: type[M]) -> M:
    """Read ``model`` from a JSON, YAML or TOML file; ``None`` gives the defaults."""
    if path is None:
        return model()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: config file not found")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text) or {}
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # any parser error is a user mistake in the file
        raise InputError(f"{p}: cannot parse config: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InputError(f"{p}: invalid config: {problems}") from None
