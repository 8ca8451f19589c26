"""The reminder service."""
