"""Reading a YAML document that a deployment may replace: its own file, or the one shipped."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: str | Path | None, package: str, resource: str, error: type[Exception], what: str) -> Any:
    """The document at ``path``, else ``package``'s shipped ``resource``; ``error`` (naming
    ``what`` and the file) when it cannot be read or is not YAML."""
    try:
        if path:
            text = Path(path).read_text(encoding="utf-8")
        else:
            text = resources.files(package).joinpath(resource).read_text(encoding="utf-8")
        return yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read {what} {path or resource}: {exc}") from None
