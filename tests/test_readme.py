"""The README stays true to the repository: its set-up commands are the ones CI runs, the files its tour names are
bundled or made by a generator it names, generated files are ignored by git, and its links to the moved
benchmark tables land on a heading."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
QUICKSTART = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && "
    "modelforge run recipes/quickstart.yaml -o out/quickstart --force"
)
TESTS = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e '.[dev]' && "
    "python -m pytest -q -p no:cacheprovider"
)


def _tour() -> str:
    start = README.index("## A tour")
    return README[start : README.index("\n## ", start + 1)]


def test_set_up_commands_are_the_ones_ci_runs():
    assert QUICKSTART in README and TESTS in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "modelforge run recipes/quickstart.yaml -o out/quickstart --force" in ci
    assert "python -m pip install --quiet torch==2.13.0" in ci
    assert "python -m pytest -q -p no:cacheprovider" in ci


def test_tour_inputs_are_bundled_or_generated():
    tour = _tour()
    for path in sorted(set(re.findall(r"(?<![\w/.-])((?:calibration|examples|out)/[\w./-]+\.\w+)", tour))):
        if path.startswith("calibration/"):
            assert (ROOT / path).is_file(), path
        elif path.startswith("examples/prune/"):
            assert "python scripts/make_prune_example.py" in tour, path
        elif path.startswith("out/minilm/"):
            assert "python benchmarks/transformer.py --export out/minilm" in tour, path
    for script in re.findall(r"python ((?:scripts|benchmarks)/\w+\.py)", README):
        assert (ROOT / script).is_file(), script


def test_generated_example_folders_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    for script in sorted((ROOT / "scripts").glob("make_*_example.py")):
        folder = re.search(r'"examples" / "(\w+)"', script.read_text()).group(1)
        assert f"examples/{folder}/" in ignored, script.name


def test_links_to_benchmark_tables_land_on_a_heading():
    headings = (ROOT / "benchmarks" / "README.md").read_text()
    anchors = set()
    for title in re.findall(r"^#+ (.+)$", headings, re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-"))
    links = re.findall(r"benchmarks/README\.md#([\w-]+)", README)
    assert links, "the README links the measured tables"
    for anchor in links:
        assert anchor in anchors, (anchor, sorted(anchors))
