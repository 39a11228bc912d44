"""actorml.actors."""
