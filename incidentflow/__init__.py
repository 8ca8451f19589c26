"""Runtime shared by the incidentflow services: settings, broker, database, logging, CLI."""
