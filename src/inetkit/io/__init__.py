"""The only code that touches sockets: listeners, blocking and asyncio drivers."""
