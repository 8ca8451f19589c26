"""Versioned event contracts and the messaging topology shared by all incidentflow services."""
