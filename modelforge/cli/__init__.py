"""The typer CLI: each command parses flags into a Recipe (or a query) and nothing else."""
