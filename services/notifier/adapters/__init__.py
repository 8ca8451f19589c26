"""Adapters to outside systems."""
