"""Configuration: frozen schema, the native TOML reader and the inetd.conf reader."""
