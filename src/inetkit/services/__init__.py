"""What to serve: service classes (a protocol core plus policy) and their registry."""
