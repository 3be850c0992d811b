"""Reading an executed runbook notebook: its printed text, and the JSON it printed after a marker."""

from __future__ import annotations

import json
from pathlib import Path


def notebook_text(path: Path) -> str:
    """Every stream output and error of an executed notebook, as one text."""
    nb = json.loads(path.read_text())
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append("".join(out["text"]))
            elif out.get("output_type") == "error":
                texts.append(f"{out['ename']}: {out['evalue']}")
    return "\n".join(texts)


def marked(text: str, marker: str) -> dict:
    """The JSON a notebook printed after a marker such as RESULT_JSON:."""
    line = next(line for line in text.splitlines() if line.startswith(marker))
    return json.loads(line[len(marker) :])
