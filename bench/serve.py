"""Serving benchmark: target-only vs quantized vs speculative (draft model, prompt lookup) vs transformers' assisted
generation, in one run on the same prompts; writes bench/results/serve.json.

    .venv/bin/python bench/serve.py [--small] [--run runs/demo] [--threads 1]

Models: ``<run>/models/target`` and ``<run>/models/draft`` when they exist, else a pair trained here for a few
minutes on Python standard-library source with a BPE tokenizer trained by ``tokenizers`` (cached under
bench/results/tmp/serve_models). Prompts are stdlib package files (training used only top-level modules):
held-out, in-domain code.
Every speculative row shows α, mean accepted length, c and the predicted E/(kc+1) beside the measured speedup, and
checks its greedy tokens equal the target's. Sections are functions in :data:`SECTIONS` (routing is added there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving.decode.engine import Engine  # noqa: E402

CACHE = ROOT / "bench" / "results" / "tmp" / "serve_models"
TRAIN_FILES = 150  # stdlib files used for training; prompts come from the files after them


from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)


def train_pair(out: Path, small: bool) -> None:
    """Train a tokenizer, a target and a draft Llama on stdlib source (time-budgeted), saved as HF dirs."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from serving.decode.tiny import stdlib_texts, train_tokenizer

    texts = stdlib_texts(limit=TRAIN_FILES, max_chars=20000)
    train_tokenizer(texts, out / "tokenizer", vocab_size=512)
    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    ids = torch.tensor([i for t in texts for i in tok.encode(t, add_special_tokens=False)])
    sizes = {"target": (256, 4, 4, 150), "draft": (64, 1, 1, 45)}
    for name, (hidden, layers, heads, budget_s) in sizes.items():
        torch.manual_seed(0)
        cfg = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=hidden,
            intermediate_size=hidden * 8 // 3,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=1024,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.eos_token_id,
            tie_word_embeddings=False,
        )
        model = LlamaForCausalLM(cfg)
        steps, loss = _train(model, ids, budget_s)
        print(f"trained {name}: {hidden}x{layers}, {steps} steps in {budget_s}s, loss {loss:.3f}", flush=True)
        model.eval().save_pretrained(str(out / name))
        tok.save_pretrained(str(out / name))


def _train(model: torch.nn.Module, ids: torch.Tensor, budget_s: float, seq: int = 64, batch: int = 8) -> tuple:
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    t0, step, loss = time.perf_counter(), 0, float("nan")
    model.train()
    while time.perf_counter() - t0 < budget_s:
        starts = torch.randint(0, len(ids) - seq - 1, (batch,), generator=g)
        x = torch.stack([ids[s : s + seq] for s in starts])
        for group in opt.param_groups:
            group["lr"] = 2e-3 * min(1.0, (step + 1) / 20)
        out = model(input_ids=x, labels=x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        step, loss = step + 1, out.loss.item()
    return step, loss


def distill(draft: torch.nn.Module, target: torch.nn.Module, ids: torch.Tensor, budget_s: float) -> tuple:
    """Train the draft toward the target's next-token distributions (KL), which is what acceptance rewards."""
    opt = torch.optim.AdamW(draft.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    t0, step, loss = time.perf_counter(), 0, float("nan")
    draft.train()
    while time.perf_counter() - t0 < budget_s:
        starts = torch.randint(0, len(ids) - 65, (8,), generator=g)
        x = torch.stack([ids[s : s + 64] for s in starts])
        with torch.no_grad():
            p_log = torch.log_softmax(target(input_ids=x).logits, -1)
        q_log = torch.log_softmax(draft(input_ids=x).logits, -1)
        kl = torch.nn.functional.kl_div(q_log, p_log, log_target=True, reduction="batchmean") / x.shape[1]
        opt.zero_grad()
        kl.backward()
        opt.step()
        step, loss = step + 1, kl.item()
    return step, loss


def train_more(out: Path, target_s: float, distill_s: float) -> None:
    """Continue training the cached target, then distill the cached draft from it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from serving.decode.tiny import stdlib_texts

    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    ids = torch.tensor([i for t in stdlib_texts(TRAIN_FILES, 20000) for i in tok.encode(t, add_special_tokens=False)])
    target = AutoModelForCausalLM.from_pretrained(str(out / "target"))
    steps, loss = _train(target, ids, target_s)
    print(f"target: {steps} more steps, loss {loss:.3f}", flush=True)
    target.eval().save_pretrained(str(out / "target"))
    draft = AutoModelForCausalLM.from_pretrained(str(out / "draft"))
    steps, loss = distill(draft, target.eval(), ids, distill_s)
    print(f"draft distilled: {steps} steps, KL {loss:.3f}", flush=True)
    draft.eval().save_pretrained(str(out / "draft"))


def load_pair(run: str | None, small: bool) -> tuple[torch.nn.Module, torch.nn.Module, Any, str]:
    """(target, draft, tokenizer, where they came from): the run's models, else the cached self-trained pair."""
    from serving.models import load_model, load_tokenizer

    base = Path(run) / "models" if run else None
    if not (base and (base / "target" / "config.json").is_file() and (base / "draft" / "config.json").is_file()):
        base = CACHE
        if not (base / "draft" / "config.json").is_file():
            train_pair(base, small)
    target, draft = load_model(base / "target", "cpu"), load_model(base / "draft", "cpu")
    return target, draft, load_tokenizer(base / "target"), str(base)


def held_out(tok: Any, n: int, prompt_tokens: int, extra: int) -> tuple[list[list[int]], list[str]]:
    """In-domain prompts and texts from stdlib packages (``email/``, ``json/`` ...): training used top-level files."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    skip = ("test", "site-packages", "idlelib", "lib2to3", "tkinter", "turtledemo")
    files = sorted(p for p in root.glob("*/*.py") if p.parts[-2] not in skip and p.stat().st_size > 8000)
    step = max(1, len(files) // (n + extra))
    texts = [p.read_text(encoding="utf-8", errors="replace")[:6000] for p in files[::step]]
    texts = texts[: n + extra]
    prompts = [tok.encode(t, add_special_tokens=False)[:prompt_tokens] for t in texts[:n]]
    return prompts, texts[n:]


SUMMED = (
    "new_tokens",
    "decode_s",
    "total_s",
    "num_draft_tokens",
    "num_accepted_draft_tokens",
    "num_rejection_steps",
    "num_spec_steps",
    "target_forward_passes",
)


def add_request(tot: dict[str, Any], toks: list[int], st: dict[str, Any]) -> None:
    """Sum one request's stats into a mode's totals."""
    for key in SUMMED:
        tot[key] = tot.get(key, 0) + st[key]
    steps = st["target_forward_passes"] - 1
    tot["steps"] = tot.get("steps", 0) + steps
    tot["draft_time_s"] = tot.get("draft_time_s", 0.0) + (st["draft_step_s"] or 0.0) * st["num_draft_tokens"]
    tot["target_time_s"] = tot.get("target_time_s", 0.0) + (st["target_step_s"] or 0.0) * steps
    tot["n_prompts"] = tot.get("n_prompts", 0) + 1
    tot["e_weighted"] = tot.get("e_weighted", 0.0) + (st["expected_tokens"] or 1.0) * steps
    tot.setdefault("outputs", []).append(toks)
    tot["decode_tokens_per_s"] = (tot["new_tokens"] - tot["n_prompts"]) / tot["decode_s"]
    tot["tokens_per_s"] = tot["new_tokens"] / tot["total_s"]


def spec_row(res: dict[str, Any], base: dict[str, Any], k: int) -> dict[str, Any]:
    """α, acceptance length, c and predicted vs measured decode speedup against the target-only run."""
    acc, prop, rej = res["num_accepted_draft_tokens"], res["num_draft_tokens"], res["num_rejection_steps"]
    alpha = acc / (acc + rej) if acc + rej else 0.0
    t_target_only = base["decode_s"] / (base["new_tokens"] - base["n_prompts"])  # one target decode step
    t_draft = res["draft_time_s"] / prop if prop else 0.0
    t_verify = res["target_time_s"] / res["steps"]
    k_mean = prop / res["steps"]
    e = res["e_weighted"] / res["steps"]  # E(α, k_i) averaged over steps (prompt lookup proposes k_i <= k)
    c = t_draft / t_target_only
    row = {
        "decode_tokens_per_s": res["decode_tokens_per_s"],
        "tokens_per_s": res["tokens_per_s"],
        "alpha": alpha,
        "draft_acceptance_rate": acc / prop if prop else 0.0,
        "mean_acceptance_length": (res["new_tokens"] - res["n_prompts"]) / res["steps"],
        "expected_tokens_E": e,
        "mean_k": k_mean,
        "c": c,
        "verify_cost_vs_target_step": t_verify / t_target_only,
        "predicted_speedup": e / (k_mean * c + 1.0),
        "predicted_speedup_with_verify_cost": e / (k_mean * c + t_verify / t_target_only),
        "measured_speedup": res["decode_tokens_per_s"] / base["decode_tokens_per_s"],
        "target_forward_passes": res["target_forward_passes"],
        "greedy_equals_target": res["outputs"] == base["outputs"],
    }
    row["measured_vs_predicted"] = row["measured_speedup"] / row["predicted_speedup"] - 1.0
    return row


def hf_generate(model: torch.nn.Module, prompt: list[int], new: int, **kw: Any) -> tuple[list[int], float]:
    """transformers' greedy generate (optionally assisted: assistant_model= / prompt_lookup_num_tokens=)."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        y = model.generate(torch.tensor([prompt]), max_new_tokens=new, min_new_tokens=new, do_sample=False, **kw)
        return y[0, len(prompt) :].tolist(), time.perf_counter() - t0


def speculative_section(ctx: dict[str, Any]) -> dict[str, Any]:
    """Target-only vs speculative (draft, prompt lookup) vs transformers' generate / assisted generation.

    Modes run interleaved per prompt so a busy machine slows them alike.
    """
    target, draft, prompts, new, k = ctx["target"], ctx["draft"], ctx["prompts"], ctx["new_tokens"], ctx["k"]
    engine = Engine(target, draft, prompt_lookup_ngram=3)
    ours = {
        "target_only": {},
        "speculative_draft": {"mode": "speculative", "k": k},
        "prompt_lookup": {"mode": "prompt_lookup", "k": k},
    }
    peers = {
        "hf_generate": {},
        "hf_assisted_generation": {"assistant_model": draft},
        "hf_prompt_lookup": {"prompt_lookup_num_tokens": k},
    }
    engine.generate(prompts[0], max_new_tokens=4)  # warm-up
    hf_generate(target, prompts[0], 4)
    tots: dict[str, dict[str, Any]] = {name: {} for name in ours}
    hf: dict[str, dict[str, Any]] = {name: {"outputs": [], "s": 0.0} for name in peers}
    for p in prompts:
        for name, kw in ours.items():
            add_request(tots[name], *engine.generate(p, max_new_tokens=new, **kw))
        for name, kw in peers.items():
            toks, secs = hf_generate(target, p, new, **kw)
            hf[name]["outputs"].append(toks)
            hf[name]["s"] += secs
    base = tots["target_only"]
    rows: dict[str, Any] = {
        "target_only": {"decode_tokens_per_s": base["decode_tokens_per_s"], "tokens_per_s": base["tokens_per_s"]}
    }
    for name in ("speculative_draft", "prompt_lookup"):
        rows[name] = spec_row(tots[name], base, k)
    hf_base = len(prompts) * new / hf["hf_generate"]["s"]
    for name, res in hf.items():
        tps = len(prompts) * new / res["s"]
        rows[name] = {
            "tokens_per_s": tps,
            "speedup_vs_hf_generate": tps / hf_base,
            "speedup_vs_our_target_only": tps / base["tokens_per_s"],
            "greedy_equals_target": res["outputs"] == base["outputs"],
        }
    return rows


def quantization_section(ctx: dict[str, Any]) -> dict[str, Any]:
    """Size, tokens/s and held-out bits per byte / perplexity of int8 quantizers vs unquantized, per model."""
    from serving.models import load_model
    from serving.quantize.methods import compare

    out = {}
    for name in ("target", "draft"):
        path = Path(ctx["models_from"]) / name
        out[name] = compare(
            lambda p=path: load_model(p, "cpu"),
            ctx["tokenizer"],
            ["int8_weight_only", "int8_dynamic", "int4_weight_only"],
            ctx["texts"],
            ctx["prompts"][:2],
            new_tokens=ctx["new_tokens"] // 2,
            seq_len=256,
        )
    return out


def routing_section(ctx: dict[str, Any]) -> dict[str, Any]:
    """Routing cost–quality curve (draft answers, target on escalation) from ``serving.api.router.cost_quality``."""
    from serving.api.backend import HFBackend
    from serving.api.router import collect_records, cost_quality

    base = Path(ctx["models_from"])
    chain = [HFBackend("draft", str(base / "draft")), HFBackend("target", str(base / "target"))]
    samples = [(t[i : i + 300], t[i + 300 : i + 600]) for t in ctx["route_texts"] for i in range(0, 2400, 600)]
    records = collect_records(chain, samples, preview_tokens=8, answer_tokens=16)
    return cost_quality(records, prices=[(0.05, 0.10), (0.50, 1.50)], floor=0.95)


SECTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "speculative": speculative_section,
    "quantization": quantization_section,
    "routing": routing_section,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="fewer prompts and tokens (a quick check)")
    ap.add_argument("--run", default=None, help="run directory with models/target and models/draft")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    ap.add_argument("--k", type=int, default=4, help="draft tokens per step")
    ap.add_argument("--only", nargs="*", default=list(SECTIONS), help="sections to run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    target, draft, tok, where = load_pair(args.run, args.small)
    n, new = (3, 48) if args.small else (6, 96)
    prompts, texts = held_out(tok, n, prompt_tokens=192, extra=4 + (4 if args.small else 10))
    ctx = {
        "target": target,
        "draft": draft,
        "tokenizer": tok,
        "prompts": prompts,
        "texts": texts[:4],
        "route_texts": texts[4:],
        "new_tokens": new,
        "k": args.k,
        "models_from": where,
        "small": args.small,
    }
    result: dict[str, Any] = {
        "machine": machine(),
        "models": where,
        "prompts": n,
        "new_tokens": new,
        "k": args.k,
        "params": {
            "target": sum(p.numel() for p in target.parameters()),
            "draft": sum(p.numel() for p in draft.parameters()),
        },
    }
    for name in args.only:
        t0 = time.perf_counter()
        result[name] = SECTIONS[name](ctx)
        print(f"[{name}] {time.perf_counter() - t0:.0f}s", flush=True)
        print(json.dumps(result[name], indent=1, default=str), flush=True)
    out = ROOT / "bench" / "results" / "serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
