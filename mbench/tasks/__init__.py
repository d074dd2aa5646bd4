"""Task definitions: the TaskSpec schema, the YAML loader with `include:`, and the task index."""
