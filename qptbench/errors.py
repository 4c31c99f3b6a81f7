"""Exceptions raised by qptbench."""


class InputError(ValueError):
    """Bad user input; the message is one line meant for the user."""
