"""Integer network description, shared integer semantics, golden model."""
