"""All SQL lives here: one module per resource, over the one Database."""
