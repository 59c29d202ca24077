# Nameko's pytest plugin does not monkey-patch eventlet; it must happen before anything
# imports socket, threading or kombu.
import eventlet

eventlet.monkey_patch()

import pytest  # noqa: E402

pytest_plugins = ["tests.fixtures.keys", "tests.fixtures.bodies"]


def pytest_collection_modifyitems(config, items):
    # Everything under tests/integration needs real services; mark it so `-m "not integration"`
    # gives the fast, broker-free unit suite.
    for item in items:
        if "tests/integration/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
