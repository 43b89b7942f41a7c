"""The ``inetkit`` command line: the only layer that prints."""
