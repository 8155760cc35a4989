"""Compare two triages of the same pairs, e.g. the rules judge and SmolLM2 as an `hf` judge:
per-response verdict agreement, the confusion table, and triage category agreement.

    python compare_judges.py runs/realign/triage/triaged.jsonl runs/hf-judge/triaged.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def _verdicts(path: Path) -> tuple[dict[tuple[str, str], bool | None], dict[str, str]]:
    """{(id, "old_winner"|"old_loser"): compliant} and {id: category}."""
    verdicts, categories = {}, {}
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        categories[rec["id"]] = rec["category"]
        winner, loser = ("rejected", "chosen") if rec.get("swapped") else ("chosen", "rejected")
        for side, name in ((winner, "old_winner"), (loser, "old_loser")):
            verdicts[(rec["id"], name)] = (rec.get("verdicts") or {}).get(side, {}).get("compliant")
    return verdicts, categories


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a_path, b_path = Path(sys.argv[1]), Path(sys.argv[2])
    a, a_cat = _verdicts(a_path)
    b, b_cat = _verdicts(b_path)
    keys = [k for k in a if k in b and a[k] is not None and b[k] is not None]
    same = sum(a[k] == b[k] for k in keys)
    table = Counter((a[k], b[k]) for k in keys)
    ids = [i for i in a_cat if i in b_cat]
    print(f"responses judged by both: {len(keys)}; verdicts agree on {same} ({100 * same / max(1, len(keys)):.0f} %)")
    print(f"  (A = {a_path}, B = {b_path})  A and B compliant: {table[(True, True)]}, A compliant / B violating: "
          f"{table[(True, False)]}, A violating / B compliant: {table[(False, True)]}, both violating: {table[(False, False)]}")
    cat_same = sum(a_cat[i] == b_cat[i] for i in ids)
    print(f"pairs in both: {len(ids)}; same triage category: {cat_same} ({100 * cat_same / max(1, len(ids)):.0f} %)")
    print(f"  categories A: {dict(Counter(a_cat[i] for i in ids))}")
    print(f"  categories B: {dict(Counter(b_cat[i] for i in ids))}")


if __name__ == "__main__":
    main()
