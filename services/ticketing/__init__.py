"""The ticketing service."""
