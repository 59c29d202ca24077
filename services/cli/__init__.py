"""The ``cluebus`` command line."""

# Nameko runs on eventlet: patch the standard library before anything imports socket,
# threading or kombu (as the `nameko` command itself does).
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")  # said on every import

import eventlet  # noqa: E402

eventlet.monkey_patch()

from .main import main  # noqa: E402

__all__ = ["main"]
