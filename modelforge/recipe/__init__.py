"""The recipe: `schema` (pydantic models, imports nothing above the core) and `load` (YAML in, each pass config
validated against the pass registry, relative paths resolved)."""
