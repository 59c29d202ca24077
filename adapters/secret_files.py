"""Files that hold secrets (private keys, broker passwords, office accounts): written
atomically with mode 0600 from the start, and refused when group or others may read them."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

OWNER_ONLY = 0o600
OWNER_ONLY_DIR = 0o700


class SecretFileError(Exception):
    """A secret file is missing, unreadable or too widely readable."""


def write_atomically(path: Path, text: str, *, mode: int = OWNER_ONLY) -> None:
    """Write ``text`` to ``path`` through a temporary file created with ``mode``, so a secret
    is never briefly world-readable and a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: several processes (nodes sharing one key directory) may write the
    # same file at once, and each must replace it whole.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def private_directory(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed and return it."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, OWNER_ONLY_DIR)
    return path


def read_private(path: Path, what: str) -> str:
    """The text of a secret file; refused when group or others have any permission on it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise SecretFileError(f"no {what} at {path}") from exc
    if mode & 0o077:
        raise SecretFileError(f"{what} {path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretFileError(f"cannot read {what} {path}: {exc}") from None
