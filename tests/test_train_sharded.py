"""Stage 3 sharded over 2 processes (gloo on CPU), under FSDP2 and DeepSpeed ZeRO-2/3: the run
finishes, the saved model or adapter loads, and it equals a 1-process run with the same global
batch.

accelerate (1.15) turns FSDP on only for GPU-like distributed types: on a CPU-only machine
`accelerate launch --use_fsdp` (or TrainingArguments ``fsdp`` through ``trainer_args``) quietly
trains with DDP, which test_use_fsdp_on_cpu_trains_with_ddp pins. To put realign under real
FSDP2 sharding here, the workers start through a shim that, once accelerate has built its state,
switches it from MULTI_CPU to FSDP as AcceleratorState does for GPUs (torch's ``fully_shard``
itself runs on CPU with gloo). Should a later accelerate shard on CPU, that test fails: then
drop the shim.
"""

import json

import pytest
import torch
import yaml

from realign.train import run as train
from realign.config import TrainConfig
from test_train_distributed import GLOBAL_BATCH, STEPS, launch, run_config, setup  # noqa: F401 (fixture)

FSDP2 = ["--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
         "--fsdp_transformer_layer_cls_to_wrap", "LlamaDecoderLayer"]
FULL = ["--fsdp_state_dict_type", "FULL_STATE_DICT"]  # else accelerate's FSDP2 default: SHARDED_STATE_DICT

SHIM = '''\
"""`realign` for `accelerate launch`, with FSDP allowed on CPU (REALIGN_TEST_FORCE_FSDP=1)."""
import datetime, os, sys

import torch.distributed as dist

# a collective that one process never joins fails after 5 minutes instead of hanging (a minute was
# too short on a loaded 2-core machine: one rank reached accelerate's state-dict broadcast 60 s late)
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=300))

import accelerate.state as S
from accelerate.utils import DistributedType

if os.environ.get("REALIGN_TEST_FORCE_FSDP") == "1":
    build = S.AcceleratorState.__init__

    def forced(self, *args, fsdp_plugin=None, **kwargs):
        fresh = not S.AcceleratorState._shared_state
        build(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fresh and fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            S.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    S.AcceleratorState.__init__ = forced

from torch.distributed.fsdp import FSDPModule

from realign.train.trainer import RealignTrainer

trainer_train = RealignTrainer.train


def reported(self, *args, **kwargs):
    out = trainer_train(self, *args, **kwargs)
    if self.accelerator.is_main_process:
        units = sorted(type(m).__name__ for m in self.model_wrapped.modules() if isinstance(m, FSDPModule))
        units = ",".join(units) or "none"
        print(f"WRAPPED {self.accelerator.distributed_type.value} {type(self.model_wrapped).__name__} {units}",
              file=sys.stderr, flush=True)
    return out


RealignTrainer.train = reported

from realign.cli import main

main()
'''


@pytest.fixture(scope="module")
def shim(setup):
    path = setup[0] / "fsdp_shim.py"
    path.write_text(SHIM)
    return path


def launched(setup, shim, name: str, force: bool = True, flags: list[str] = FULL, **overrides):
    root, model_dir, data = setup
    out = root / name
    cfg = root / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({**run_config(model_dir, data, out, GLOBAL_BATCH // 2), **overrides}))
    proc = launch([str(shim), "train", "--config", str(cfg), "-q"], mode=(*FSDP2, *flags),
                  env={"REALIGN_TEST_FORCE_FSDP": "1" if force else "0"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc


@pytest.mark.slow
def test_use_fsdp_on_cpu_trains_with_ddp(setup, shim):
    _, proc = launched(setup, shim, "unforced", force=False, method="dpo")
    assert "WRAPPED MULTI_CPU DistributedDataParallel none" in proc.stderr  # no FSDP unit


CASES = [
    # KL terms: a deep-copied, unsharded reference model; accelerate's FSDP2 default checkpoint
    # format (SHARDED_STATE_DICT), with which Trainer.save_model alone would write no weights
    pytest.param("full", "trace", [], id="full-trace-sharded-checkpoints"),
    # KL terms: the adapter-disabled reference pass, whose FSDP forward all-gathers, taken by
    # every process together (a process whose micro-batch has no KL term takes a one-row pass)
    pytest.param("lora", "trace", FULL, id="lora-trace"),
]


@pytest.mark.slow
@pytest.mark.parametrize("finetune, method, flags", CASES)
def test_fsdp2_trains_like_one_process_with_the_same_global_batch(setup, shim, finetune, method, flags):
    from peft import PeftModel
    from safetensors.torch import load_file

    from realign.modeling.loading import load_causal_lm

    root, model_dir, data = setup
    name = f"fsdp-{finetune}-{method}{'' if flags else '-sharded'}"
    out, proc = launched(setup, shim, name, flags=flags, finetune=finetune, method=method)
    wrapped = "FSDPPeftModel" if finetune == "lora" else "FSDPLlamaForCausalLM"
    line = next(x for x in proc.stderr.splitlines() if x.startswith("WRAPPED "))
    kind, root_class, units = line.split()[1:]
    assert (kind, root_class) == ("FSDP", wrapped)
    assert units.split(",").count("FSDPLlamaDecoderLayer") == 2  # each decoder layer sharded on its own

    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["processes"] == {"count": 2, "per_device_batch": 2, "global_batch": GLOBAL_BATCH}
    assert summary["steps"] == STEPS
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    assert len(losses) == STEPS and all(torch.isfinite(torch.tensor(losses)))
    saved = out / ("adapter" if finetune == "lora" else "model")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".config_key", saved.name, "checkpoints", "reference_logps.pt", "train_config.yaml", "train_summary.json"])
    weights = "adapter_model.safetensors" if finetune == "lora" else "model.safetensors"
    assert (saved / weights).exists()

    # the saved model or adapter loads and differs from the base model
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    base = load_causal_lm(str(model_dir), device="cpu")
    with torch.no_grad():
        before = base(input_ids=ids).logits
        if finetune == "lora":
            trained = PeftModel.from_pretrained(base, str(saved))
        else:
            trained = load_causal_lm(str(saved), device="cpu")
        after = trained(input_ids=ids).logits
    assert torch.isfinite(after).all() and not torch.allclose(before, after)

    single_out = root / f"single-{name}"
    single = train.run(TrainConfig(**{**run_config(model_dir, data, single_out, GLOBAL_BATCH), "device": "cpu",
                                      "finetune": finetune, "method": method}), progress=False)
    single_losses = [h["loss"] for h in single["log_history"] if "loss" in h]
    assert losses == pytest.approx(single_losses, rel=1e-5, abs=1e-6)
    a = load_file(saved / weights)
    b = load_file(single_out / saved.name / weights)
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"FSDP2 2 processes vs 1 ({finetune}, {method}): max |Δ| weight {worst:.3g}")
    # Tolerance: the same float32 sums in another order (the losses agree to 1e-6), which Adam's
    # per-element normalisation magnifies on weights whose gradients are near 0: after 3 steps of
    # lr 5e-3, seen 2e-4 (lora dpo), 6e-5 (full), 2e-8 (lora trace): the gaps of 2-process DDP vs
    # 1 process too (FSDP2 and DDP agree to 2e-7). So < 5e-4 = lr / 10.
    assert worst < 5e-4, worst


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_trains_like_one_process_with_the_same_global_batch(setup, stage):
    """DeepSpeed ZeRO (its CPU accelerator, gloo) with LoRA and KL terms: under ZeRO-3 every
    forward gathers the shards, so the adapter-disabled reference pass is taken in lockstep."""
    pytest.importorskip("deepspeed")
    from safetensors.torch import load_file

    root, model_dir, data = setup
    out = root / f"zero{stage}"
    cfg = root / f"zero{stage}.yaml"
    cfg.write_text(yaml.safe_dump({**run_config(model_dir, data, out, GLOBAL_BATCH // 2), "method": "trace"}))
    proc = launch(["-m", "realign", "train", "--config", str(cfg), "-q"],
                  mode=("--use_deepspeed", "--zero_stage", str(stage), "--gradient_accumulation_steps", "1"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["processes"] == {"count": 2, "per_device_batch": 2, "global_batch": GLOBAL_BATCH}
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    # DeepSpeed's own checkpoint: the optimizer state partitioned over the 2 ranks
    states = out / "checkpoints" / f"checkpoint-{STEPS}" / f"global_step{STEPS}"
    assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= {p.name for p in states.iterdir()}

    single_out = root / f"single-zero{stage}"
    single = train.run(TrainConfig(**{**run_config(model_dir, data, single_out, GLOBAL_BATCH), "device": "cpu",
                                      "method": "trace"}), progress=False)
    assert losses == pytest.approx([h["loss"] for h in single["log_history"] if "loss" in h], rel=1e-5, abs=1e-6)
    a = load_file(out / "adapter" / "adapter_model.safetensors")
    b = load_file(single_out / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 5e-4  # the tolerance of the FSDP test above
