"""Test-only switches. Nothing in consim turns them on; tests and ``consim check`` campaigns do."""
