"""``realign judge audit`` on files: read the labels (:mod:`.labels`), judge every response
(cache first, then the judge, as triage does), measure (:mod:`.audit`) and write the outputs
into one folder:

* ``audit.json`` — every number, the judge's identity, the resolved config and provenance;
* ``audit.html`` — one self-contained page with the reliability diagram; ``audit.md`` (its
  figure in ``audit_files/``);
* ``audit_items.jsonl`` — every response with its label, verdict, P(compliant) and category;
* ``audit_config.yaml`` — the resolved config.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import make_judge
from ..config import JudgeAuditConfig, resolved
from ..runs.files import check_output_paths, write_json, write_jsonl, write_text, write_yaml
from ..policy import Policy
from ..runs.provenance import provenance
from ..report.audit import audit_sections, audit_title
from ..report.render import render_html, write_markdown
from .audit import audit_metrics, verdict_name
from .base import Judge, JudgeItem, Verdict
from .cache import VerdictCache
from .labels import LabelSet, read_labels
from .rules import RulesJudge
from .store import JudgingCounts, VerdictStore, retry_abstentions, settle

OUTPUTS = {"audit.json": "the audit", "audit.html": "the audit page", "audit.md": "the audit in Markdown",
           "audit_items.jsonl": "the audited items", "audit_config.yaml": "the audit's config"}


def output_paths(out: str | Path) -> dict[str, Path]:
    """Every file the audit writes in ``out``, by name."""
    return {name: Path(out) / name for name in OUTPUTS}


def categories(labels: LabelSet, policy: Policy) -> tuple[list[str], str]:
    """Each record's category: its own, else the rules judge's category of its prompt where the
    policy has rules, else ``all``; and where the fallback came from (for the report)."""
    rules = RulesJudge().compiled(policy) if policy.rules is not None else None
    found = []
    for r in labels.records:
        if r.category is not None:
            found.append(r.category)
        else:
            found.append(rules.classify(r.prompt, r.response).category if rules is not None else "all")
    where = "the policy's rules" if rules is not None else "'all': the policy has no rules"
    return found, where


def judge_labels(labels: LabelSet, policy: Policy, judge: Judge, config: JudgeAuditConfig,
                 progress: bool) -> tuple[list[Verdict], list[bool | None], dict]:
    """The judge's verdict on every record (each distinct response judged once; cached ones not
    asked again; abstentions asked again under ``on_unparseable: retry``), the verdicts settled
    by the ``on_unparseable`` rule as triage settles them, and the judging counts."""
    index: dict[JudgeItem, int] = {}
    for r in labels.records:
        index.setdefault(JudgeItem(r.prompt, r.response), len(index))
    items = list(index)
    stats = JudgingCounts()
    with VerdictCache(config.cache_path(), commit_every=1) as cache:
        store = VerdictStore(judge, policy, cache, progress)
        unique = store.resolve(items, stats)
        if config.judge.on_unparseable == "retry":
            retry_abstentions(store, items, unique, stats, config.judge.unparseable_retries)
    verdicts = [unique[index[JudgeItem(r.prompt, r.response)]] for r in labels.records]
    settled = [settle(v, config.judge.on_unparseable) for v in verdicts]
    counts = {"unique_responses": len(items), "judged": stats.judged, "cache_hits": stats.cache_hits,
              "judge_calls": stats.judge_calls}
    return verdicts, settled, counts


def item_rows(labels: LabelSet, verdicts: list[Verdict], found: list[str]) -> list[dict]:
    """One row per labelled response: what the person and the judge said."""
    return [{"id": r.id, "category": c, "label": verdict_name(r.compliant), "verdict": verdict_name(v.compliant),
             "agrees": None if v.compliant is None else v.compliant == r.compliant, "p_compliant": v.p_compliant,
             "raw": v.raw, "pair_id": r.pair_id, "role": r.role, "prompt": r.prompt, "response": r.response}
            for r, v, c in zip(labels.records, verdicts, found)]


def run_audit(config: JudgeAuditConfig, progress: bool = True) -> dict:
    """Audit ``config.judge`` against the labels of ``config.labels`` under ``config.policy``;
    write the outputs (:data:`OUTPUTS`) into ``config.out`` and return ``audit.json``'s content."""
    paths = output_paths(config.out)
    check_output_paths({"--labels": config.labels, "--policy": config.policy, "--cache": config.cache_path()},
                       {f"{OUTPUTS[name]} in --out": path for name, path in paths.items()})
    start = time.perf_counter()
    policy = Policy.load(config.policy)
    labels = read_labels(config.labels)
    judge = make_judge(config.judge)
    found, categories_from = categories(labels, policy)
    verdicts, settled, counts = judge_labels(labels, policy, judge, config, progress)
    result = {"stage": "judge-audit", "labels": str(config.labels), "unlabelled_rows_skipped": labels.unlabelled,
              "policy": {"name": policy.name, "hash": policy.hash}, "judge": judge.identity,
              "categories_from": categories_from}
    result.update(audit_metrics([r.compliant for r in labels.records], verdicts, found, labels.pairs, settled,
                                config.bins))
    result["judging"] = counts
    result["files"] = {name: name for name in OUTPUTS}
    result["wall_s"] = round(time.perf_counter() - start, 3)
    result["config"] = resolved(config)
    result["provenance"] = provenance()
    _write(paths, result, item_rows(labels, verdicts, found), config)
    return result


def _write(paths: dict[str, Path], result: dict, items: list[dict], config: JudgeAuditConfig) -> None:
    """Every output, each atomically; ``audit.json`` last, so its presence means a whole audit."""
    sections = audit_sections(result, items)
    title, meta = audit_title(result)
    write_jsonl(paths["audit_items.jsonl"], items)
    write_yaml(paths["audit_config.yaml"], resolved(config))
    write_text(paths["audit.html"], render_html(sections, title, meta, command="realign judge audit"))
    write_markdown(paths["audit.md"], sections, title, meta)
    write_json(paths["audit.json"], result)
