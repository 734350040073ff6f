import sys

from modelforge.cli.app import forget_current_folder, main

# `python -m modelforge` put the current folder first on the import path; a module planted there (a checked-out
# pull request) must never shadow what a factory or custom metric names. Folders to import from are named with
# --code-path. (Under `python -P`, nothing was put there.)
if not sys.flags.safe_path and sys.path:
    forget_current_folder(sys.path[0])
main()
