"""The live operations dashboard; its code lives in :mod:`livesync.demo` (see README.md)."""
