"""Sans-IO protocol cores: bytes in, events and bytes out; no sockets, no clock."""
