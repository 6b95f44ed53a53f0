"""Strip notebook outputs, keeping only those of cells nbval checks.

    python scripts/strip_outputs.py book/*.ipynb

Chapters are committed without their (large, audio-filled) outputs; the book build executes them
afresh. Cells starting with `# NBVAL_CHECK_OUTPUT` keep their outputs: `pytest --nbval-lax`
compares exactly those against a fresh run.
"""
import sys

import nbformat

MARK = "# NBVAL_CHECK_OUTPUT"


def strip(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        if cell.source.lstrip().startswith(MARK):
            continue  # nbval compares these; it needs their execution counts too
        cell.outputs = []
        cell.execution_count = None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        strip(p)
        print(f"stripped {p}")
