"""Errors of the command line."""


class CommandError(Exception):
    """A command failed in a way the user can fix; printed as one line."""
