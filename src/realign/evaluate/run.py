"""``realign eval``: generate on held-out prompts, judge, and write metrics.json (every number
with its count and 95 % interval) plus generations.jsonl (every response and verdict, so each
number can be audited). Generations and verdicts are cached: a rerun judges and generates
nothing twice."""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..config import resolved
from ..data import iter_source, prompt_text
from ..errors import DataError, RealignError, shorten
from ..runs.files import check_output_paths, folder_lock, write_json, write_jsonl, write_yaml
from ..modeling.generation import over_long_prompts
from ..judges import endpoint_named, make_judge
from ..judges.base import JudgeItem, Verdict
from ..judges.cache import VerdictCache
from ..judges.store import JudgingCounts, VerdictStore
from ..metrics.prompts import load_rows
from ..metrics.table import Outcomes, measure
from ..modeling.chat import CHAT_ENCODING
from ..modeling.loading import load_adapter, load_causal_lm, load_tokenizer
from ..modeling.sources import model_fingerprint
from ..policy import Policy
from ..runs.provenance import input_digest, model_digest, provenance
from ..runs.provenance import produced_by as record
from ..runs.stage import Paths, output_digests, process_state
from .attacks import load_templates, wrap
from .generators import LocalGenerator, ServerGenerator, decoding
from .utility import answer_correct, kl_to_reference, perplexity


class _NotJudged:
    """The verdict store of a non-main process in a data-parallel evaluation: it takes part in
    generation (which is collective) and judges nothing; the main process judges and writes."""

    def resolve(self, items, stats, *, fresh: bool = False, names=None):
        return [Verdict(compliant=True, p_compliant=None, raw="") for _ in items]


def _judge(store, stats, prompts: Sequence[str], responses: Sequence[str], rule: str, names: Sequence[str]):
    """Verdicts; abstentions follow the judge's ``on_unparseable`` rule (retry/drop: left out).
    ``names``: the row each response answers, for a judge error about one response."""
    verdicts = store.resolve([JudgeItem(p, r) for p, r in zip(prompts, responses)], stats, names=names)
    settled = []
    for v in verdicts:
        if v.compliant is not None:
            settled.append(v.compliant)
        else:
            settled.append({"violating": False, "compliant": True}.get(rule))
    return verdicts, settled


def evaluate_state(generate, store, stats, policy, config, rows, attacks, templates) -> tuple[dict, list[dict]]:
    """All metrics for one model state (:func:`realign.metrics.table.measure`); returns (metrics, generation
    records)."""
    records: list[dict] = []
    policy_rows = [r for r in rows if "answer" not in r]
    benign_rows = [r for r in rows if "answer" in r]
    outcomes = Outcomes(policy.name, policy_rows, [], [], [], None)
    if policy_rows:
        responses = generate([r["prompt"] for r in policy_rows])
        prompts = [prompt_text(r["prompt"]) for r in policy_rows]
        names = [f"{config.prompts} row {shorten(r['id'])}: its response" for r in policy_rows]
        outcomes.verdicts, outcomes.settled = _judge(store, stats, prompts, responses, config.judge.on_unparseable,
                                                     names)
        for r, response, v in zip(policy_rows, responses, outcomes.verdicts):
            records.append({"id": r["id"], "set": "policy", "prompt": r["prompt"], "slice": r.get("slice"),
                            "response": response, "compliant": v.compliant, "p_compliant": v.p_compliant, "raw": v.raw})
    if benign_rows:
        responses = generate([r["prompt"] for r in benign_rows])
        outcomes.correct = [answer_correct(resp, str(r["answer"])) for r, resp in zip(benign_rows, responses)]
        for r, response, c in zip(benign_rows, responses, outcomes.correct):
            records.append({"id": r["id"], "set": "benign", "prompt": r["prompt"], "slice": r.get("slice"),
                            "response": response, "answer": r["answer"], "correct": c})
    if attacks:
        outcomes.attacks = {}
        for name, template in templates.items():
            wrapped = [wrap(template, prompt_text(a["prompt"])) for a in attacks]
            responses = generate(wrapped)
            prompts = [prompt_text(a["prompt"]) for a in attacks]
            names = [f"{config.attacks} row {shorten(a['id'])}: its response wrapped in {name!r}" for a in attacks]
            verdicts = store.resolve([JudgeItem(p, r) for p, r in zip(prompts, responses)], stats, names=names)
            outcomes.attacks[name] = verdicts
            for a, w, response, v in zip(attacks, wrapped, responses, verdicts):
                records.append({"id": f"{a['id']}/{name}", "set": f"attack:{name}", "prompt": w, "response": response,
                                "compliant": v.compliant, "raw": v.raw})
    return measure(outcomes), records


def produced_by(config, judge=None, policy=None) -> dict:
    """What produces the metrics: the resolved settings and the content of the model, adapter,
    reference, prompt, attack and text files, the policy and the judge's identity
    (:func:`realign.runs.provenance.produced_by`); ``realign run`` skips the stage only on an exact
    match. ``judge``, ``policy``: the judge and policy already built from the config, if any."""
    inputs = {name: model_digest(getattr(config, name)) for name in ("model", "adapter", "reference")}
    files = ("prompts", "attacks", "attack_templates", "text")
    inputs.update({name: input_digest(getattr(config, name)) for name in files})
    inputs["policy"] = (policy if policy is not None else Policy.load(config.policy)).hash
    inputs["judge"] = (judge or make_judge(config.judge)).identity
    return record(config, inputs, ignore=("out", "device", "cache"))


@dataclass
class _Inputs:
    """What is evaluated on: the policy, its prompt rows, the attack rows and templates, and the
    held-out texts for perplexity."""

    policy: Policy
    rows: list[dict]
    attacks: list[dict]
    templates: dict
    texts: list[str]


def run(config, progress: bool = True, judge=None, policy=None) -> dict:
    """Evaluate ``config.model`` (+ adapter; + the base model with ``baseline``). Responses come
    from :mod:`realign.evaluate.generators` (local ``generate``, data-parallel under
    ``accelerate launch``, or a server); under several processes only the main one judges and
    writes, and the others return an empty dict. ``judge``, ``policy``: the judge and policy
    already built from the config, if any."""
    check_output_paths(*paths(config))
    with folder_lock(Path(config.out).parent):
        return _run(config, progress, judge, policy)


def _run(config, progress: bool, judge, policy) -> dict:
    """The evaluation, under the lock of its output folder."""
    start = time.perf_counter()
    inputs = _read_inputs(config, policy if policy is not None else Policy.load(config.policy))
    judge = judge if judge is not None else make_judge(config.judge)
    made = produced_by(config, judge, inputs.policy)
    served = config.generator.backend == "openai"
    state, model, tokenizer = _load_model(config, served, inputs.texts)
    main = state is None or state.is_main_process
    stats = JudgingCounts()
    metrics = _header(config, inputs.policy, judge)
    with VerdictCache(config.cache_path(), commit_every=1) as cache:
        store = VerdictStore(judge, inputs.policy, cache, progress) if main else _NotJudged()
        records = _evaluate_states(config, inputs, model, tokenizer, cache, store, stats, served, main, progress,
                                   metrics)
        if not main:  # a data-parallel helper process: its share of the generation is done
            return {}
        if model is not None and (config.adapter is not None or config.reference is not None) and (
                not served or config.reference is not None):
            metrics["utility"]["kl_to_reference"] = _kl_to_reference(config, model, tokenizer, records)
    metrics["judging"] = {"judged": stats.judged, "cache_hits": stats.cache_hits, "judge_calls": stats.judge_calls}
    metrics["generation"] = _generation(config, state, served, model, tokenizer, inputs.rows)
    _write_outputs(config, metrics, records, made, start)
    return metrics


def paths(config) -> Paths:
    """What the stage reads and writes: checked before anything is loaded, so that no output
    overwrites an input."""
    return Paths(
        {"--prompts": config.prompts, "--attacks": config.attacks, "--attack-templates": config.attack_templates,
         "--text": config.text, "--policy": config.policy, "--cache": config.cache_path(), "--model": config.model,
         "--adapter": config.adapter, "the reference model": config.reference,
         "the judge model": config.judge.model if config.judge.backend == "hf" else None},
        {"--out": config.out, "the generations beside --out": Path(config.out).parent / "generations.jsonl",
         "the config beside --out": Path(config.out).parent / "eval_config.yaml"},
    )


def _read_inputs(config, policy) -> _Inputs:
    """The policy and the rows, attacks, templates and texts the config names."""
    rows = load_rows(config.prompts, policy)
    attacks = load_rows(config.attacks) if config.attacks else []
    templates = load_templates(config.attack_templates) if attacks else {}
    texts = [r.get("text") or prompt_text(r["prompt"]) for r in load_rows_or_text(config.text)] if config.text else []
    return _Inputs(policy, rows, attacks, templates, texts)


def _load_model(config, served: bool, texts: list[str]):
    """(process state, model, tokenizer). Generating locally, this process's state and the
    model (+ adapter); served, no process state, and the model only to measure KL or perplexity
    (else ``None``)."""
    if served:  # responses come from a server: the model is loaded here only to measure KL or perplexity
        if config.baseline and config.adapter is not None and not config.generator.baseline_model:
            raise RealignError("eval: baseline with generator.backend openai needs generator.baseline_model "
                               "(the served name of the model without the adapter)")
        state = None
        needs_local = bool(texts) or config.reference is not None
    else:
        state = process_state(config.device)
        needs_local = True
    if not needs_local:
        return state, None, None
    device = str(state.device) if state is not None and state.num_processes > 1 else config.device
    model = load_causal_lm(config.model, device=device)
    tokenizer = load_tokenizer(config.model)
    if config.adapter is not None:
        model = load_adapter(model, config.adapter).eval()
    return state, model, tokenizer


def _header(config, policy, judge) -> dict:
    """The first keys of metrics.json: what was evaluated, under which policy and judge (a
    hosted judge's endpoint too)."""
    return {
        "stage": "eval",
        "label": config.label or Path(config.adapter or config.model).name,
        "model": config.model,
        "adapter": config.adapter,
        "policy": {"name": policy.name, "hash": policy.hash},
        "judge": judge.identity,
        **endpoint_named(judge),
    }


def _model_states(config, served: bool, model) -> list[tuple]:
    """(name, context, generator identity) of each state evaluated: ``after`` (the model with
    its adapter, or the served model) and, with ``baseline`` and an adapter, ``baseline`` (the
    adapter disabled, or the served baseline model)."""
    ident = f"gen/{model_fingerprint(config.model) or config.model}/{CHAT_ENCODING}/{decoding(config)}"
    if served:
        states = [("after", nullcontext(), config.generator.model or config.model)]
        if config.baseline and config.adapter is not None:
            states.append(("baseline", nullcontext(), config.generator.baseline_model))
        return states
    if config.adapter is None:
        return [("after", nullcontext(), ident)]
    adapter_id = f"{ident}/adapter:{model_fingerprint(config.adapter) or config.adapter}"
    states = [("after", nullcontext(), adapter_id)]
    if config.baseline:
        states.append(("baseline", model.disable_adapter(), ident))
    return states


def _served_content(config, state: str) -> str:
    """What a server serves in ``state``, as far as it is known here: the content identities
    (:func:`realign.runs.provenance.model_digest`) of the model and, ``after``, of the adapter. Part
    of the server generator's identity, since the served name does not change when what it
    serves does (a retrained adapter behind the same name)."""
    parts = [model_digest(config.model)]
    if state == "after" and config.adapter is not None:
        parts.append(model_digest(config.adapter))
    return "+".join(parts)


def _evaluate_states(config, inputs: _Inputs, model, tokenizer, cache, store, stats, served: bool, main: bool,
                     progress: bool, metrics: dict) -> list[dict]:
    """Generate and judge in every model state (:func:`_model_states`): the ``after`` state's
    metrics go to the top level of ``metrics``, the baseline's under ``baseline``. Returns the
    generation records of all states, each with its ``model_state``."""
    all_records = []
    for name, context, identity in _model_states(config, served, model):
        with context:
            if served:
                generate = ServerGenerator(config.generator, identity, config, cache, progress,
                                           serves=_served_content(config, name))
            else:
                generate = LocalGenerator(model, tokenizer, identity, config, cache, progress and main)
            state_metrics, records = evaluate_state(generate, store, stats, inputs.policy, config, inputs.rows,
                                                    inputs.attacks, inputs.templates)
            if inputs.texts and main and model is not None and (not served or name == "after"):
                state_metrics["utility"]["perplexity"] = perplexity(model, tokenizer, inputs.texts, config.max_length,
                                                                    config.batch_size)
            if served:
                state_metrics["generator"] = {"backend": "openai", "model": identity}
        for r in records:
            r["model_state"] = name
        all_records.extend(records)
        if name == "after":
            metrics.update(state_metrics)
        else:
            metrics["baseline"] = state_metrics
    return all_records


def _kl_to_reference(config, model, tokenizer, records: list[dict]):
    """KL to the reference (``config.reference``, else the model with its adapter disabled) on
    the ``after`` state's benign and policy responses."""
    import torch

    benign = [r for r in records if r["model_state"] == "after" and r["set"] in ("benign", "policy")]
    if config.reference is not None:
        ref_model = load_causal_lm(config.reference, device=config.device)
        reference = lambda: nullcontext(ref_model)  # noqa: E731
    else:
        reference = model.disable_adapter
    with torch.no_grad():
        return kl_to_reference(
            model, tokenizer, [r["prompt"] for r in benign], [r["response"] for r in benign], reference,
            config.max_length, config.batch_size,
        )


def _generation(config, state, served: bool, model, tokenizer, rows: list[dict]) -> dict:
    """metrics.json's ``generation``: the decoding settings, and for a local model the prompts too
    long for it (with a warning)."""
    generation = {"max_new_tokens": config.max_new_tokens, "temperature": config.temperature, "seed": config.seed,
                  "backend": config.generator.backend, "processes": 1 if state is None else state.num_processes}
    if not served and model is not None:
        long = generation["over_long_prompts"] = over_long_prompts(model, tokenizer, rows, config.max_new_tokens)
        if long["count"]:
            print(f"eval: {long['count']} of {len(rows)} prompts are longer than the {long['limit_tokens']} tokens the model "
                  f"takes with max_new_tokens {config.max_new_tokens} (longest {long['longest_tokens']}); they were cut "
                  "at their start (metrics.json: generation.over_long_prompts)", file=sys.stderr)
    return generation


def _write_outputs(config, metrics: dict, records: list[dict], made: dict, start: float) -> None:
    """metrics.json (with its files, time, settings and provenance), generations.jsonl and
    eval_config.yaml."""
    out = Path(config.out)
    metrics["files"] = {"generations": "generations.jsonl"}
    metrics["wall_s"] = round(time.perf_counter() - start, 3)
    metrics["config"] = resolved(config)
    metrics["produced_by"] = made
    metrics["provenance"] = provenance()
    write_jsonl(out.parent / "generations.jsonl", records)
    write_yaml(out.parent / "eval_config.yaml", resolved(config))
    metrics["outputs"] = output_digests(out, [out.parent / "generations.jsonl"])
    write_json(out, metrics)


def load_rows_or_text(source: str) -> list[dict]:
    """Held-out texts for perplexity: a .txt file (one text per non-empty line) or JSONL rows
    with ``text`` (or ``prompt``)."""
    path = Path(source)
    if path.suffix == ".txt":
        if not path.exists():
            raise RealignError(f"{path}: file not found")
        return [{"text": line} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for where, obj in iter_source(source):
        if isinstance(obj, DataError):
            raise obj
        if not isinstance(obj, dict) or not isinstance(obj.get("text", obj.get("prompt")), str):
            raise DataError(source, "expected an object with a 'text' string", field="text", **where)
        rows.append(obj)
    return rows
