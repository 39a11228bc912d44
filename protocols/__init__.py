"""actorml.protocols."""
