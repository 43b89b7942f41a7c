"""inetkit: an inetd-style super-server and socket-service toolkit."""

__version__ = "0.1.0"
