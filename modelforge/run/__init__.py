"""Running a recipe, one job per module: plan (the pass chain, `--dry-run`), inputs (model and data, opened once),
stages (a pass and the stage cache), gates (defaults, verdict), records (report and manifest), output (the folder,
staging, the atomic move), runner (the orchestration); cache and grants serve them."""
