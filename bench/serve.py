"""Serving benchmark: target-only vs quantized vs speculative (draft model, prompt lookup, each with and without
auto-off) vs transformers' assisted generation, in one run on the same prompts; writes bench/results/serve.json.

    .venv/bin/python bench/serve.py [--small] [--run runs/demo] [--threads 1]

Models: ``<run>/models/target`` and ``<run>/models/draft`` when they exist, else a pair trained here for a few
minutes on Python standard-library source with a BPE tokenizer trained by ``tokenizers`` (cached under
bench/results/tmp/serve_models).
Speculation runs over a 50-prompt mix (``--small``: 12): English prose (docstrings of stdlib packages), code (stdlib
package files; training used only top-level modules) and non-English text (gettext catalogs under /usr/share/locale),
interleaved per prompt with target-only decoding. Every speculative row shows α, mean accepted length, c, v (verify
pass / plain step) and the predicted E/(k·c+v), both as served (c and v calibrated for the pair at load, per-request
α) and from this run's totals, beside the measured speedup, overall and per domain, and checks its greedy tokens equal
the target's. Sections are functions in :data:`SECTIONS`.
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
from serving.decode.speculative import AutoOff, expected_tokens  # noqa: E402

CACHE = ROOT / "bench" / "results" / "tmp" / "serve_models"
TRAIN_FILES = 150  # stdlib files used for training; prompts come from the files after them


from machine import machine  # noqa: E402  (bench/machine.py, shared by every bench)

# fixed steps, not a time budget: the same pair on a busy or a quiet machine (the cache is keyed on this recipe)
RECIPE = {"tokenizer_vocab": 512, "target": {"size": (256, 4, 4), "steps": 600},
          "draft": {"size": (64, 1, 1), "steps": 1200, "distill_steps": 300}, "seed": 0}  # fmt: skip


def train_pair(out: Path, small: bool) -> None:
    """Train a tokenizer, a target and a draft Llama on stdlib source (fixed steps; the draft then distilled from the
    target, which is what acceptance rewards), saved as HF dirs with the recipe."""
    from transformers import AutoTokenizer

    from serving.decode.tiny import stdlib_texts, train_tokenizer

    texts = stdlib_texts(limit=TRAIN_FILES, max_chars=20000)
    train_tokenizer(texts, out / "tokenizer", vocab_size=RECIPE["tokenizer_vocab"])
    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    ids = torch.tensor([i for t in texts for i in tok.encode(t, add_special_tokens=False)])
    models = {}
    for name in ("target", "draft"):
        t0 = time.perf_counter()
        models[name], loss = _new_trained(tok, ids, name)
        print(f"trained {name}: {RECIPE[name]['size']}, {RECIPE[name]['steps']} steps in "
              f"{time.perf_counter() - t0:.0f}s, loss {loss:.3f}", flush=True)  # fmt: skip
    kl = distill(models["draft"], models["target"], ids, RECIPE["draft"]["distill_steps"])
    print(f"draft distilled: {RECIPE['draft']['distill_steps']} steps, KL {kl:.3f}", flush=True)
    for name, model in models.items():
        model.eval().save_pretrained(str(out / name))
        tok.save_pretrained(str(out / name))
    (out / "recipe.json").write_text(json.dumps(RECIPE, sort_keys=True))


def _new_trained(tok: Any, ids: torch.Tensor, name: str) -> tuple[torch.nn.Module, float]:
    """A Llama of the recipe's size for ``name`` (target or draft), trained for the recipe's steps."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, heads = RECIPE[name]["size"]
    torch.manual_seed(RECIPE["seed"])
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
    loss = _train(model, ids, RECIPE[name]["steps"])
    return model.eval(), loss


def weak_draft(base: Path) -> torch.nn.Module:
    """The draft before distillation (trained on the same text only): a draft that often disagrees with the target,
    i.e. speculation that loses. Trained once next to the cached pair (same seed and steps as the draft's LM phase)."""
    from transformers import AutoTokenizer

    from serving.decode.tiny import stdlib_texts
    from serving.models import load_model

    out = base / "draft_lm"
    if not (out / "config.json").is_file():
        tok = AutoTokenizer.from_pretrained(str(base / "tokenizer"))
        texts = stdlib_texts(TRAIN_FILES, 20000)
        ids = torch.tensor([i for t in texts for i in tok.encode(t, add_special_tokens=False)])
        model, loss = _new_trained(tok, ids, "draft")
        print(f"trained draft_lm (not distilled): loss {loss:.3f}", flush=True)
        model.save_pretrained(str(out))
        tok.save_pretrained(str(out))
    return load_model(out, "cpu")


def _train(model: torch.nn.Module, ids: torch.Tensor, steps: int, seq: int = 64, batch: int = 8) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    loss = float("nan")
    model.train()
    for step in range(steps):
        starts = torch.randint(0, len(ids) - seq - 1, (batch,), generator=g)
        x = torch.stack([ids[s : s + seq] for s in starts])
        for group in opt.param_groups:
            group["lr"] = 2e-3 * min(1.0, (step + 1) / 20)
        out = model(input_ids=x, labels=x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        loss = out.loss.item()
    return loss


def distill(draft: torch.nn.Module, target: torch.nn.Module, ids: torch.Tensor, steps: int) -> float:
    """Train the draft toward the target's next-token distributions (KL), which is what acceptance rewards."""
    opt = torch.optim.AdamW(draft.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    loss = float("nan")
    draft.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - 65, (8,), generator=g)
        x = torch.stack([ids[s : s + 64] for s in starts])
        with torch.no_grad():
            p_log = torch.log_softmax(target(input_ids=x).logits, -1)
        q_log = torch.log_softmax(draft(input_ids=x).logits, -1)
        kl = torch.nn.functional.kl_div(q_log, p_log, log_target=True, reduction="batchmean") / x.shape[1]
        opt.zero_grad()
        kl.backward()
        opt.step()
        loss = kl.item()
    draft.eval()
    return loss


def load_pair(run: str | None, small: bool) -> tuple[torch.nn.Module, torch.nn.Module, Any, str]:
    """(target, draft, tokenizer, where they came from): the run's models, else the cached self-trained pair."""
    from serving.models import load_model, load_tokenizer

    base = Path(run) / "models" if run else None
    if not (base and (base / "target" / "config.json").is_file() and (base / "draft" / "config.json").is_file()):
        base = CACHE
        recipe = base / "recipe.json"
        if not (recipe.is_file() and json.loads(recipe.read_text()) == json.loads(json.dumps(RECIPE))):
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


NEVER_OFF = AutoOff(min_speedup=0.0)  # speculation that never switches itself off (what it costs when it loses)
# mode -> (engine: which drafter, generate() keywords); interleaved per prompt
MODES: dict[str, tuple[str, dict[str, Any]]] = {
    "target_only": ("distilled", {}),
    "speculative_draft": ("distilled", {"mode": "speculative", "auto_off": NEVER_OFF}),
    "speculative_draft_auto_off": ("distilled", {"mode": "speculative", "auto_off": AutoOff()}),
    "speculative_weak_draft": ("weak", {"mode": "speculative", "auto_off": NEVER_OFF}),
    "speculative_weak_draft_auto_off": ("weak", {"mode": "speculative", "auto_off": AutoOff()}),
    "prompt_lookup": ("distilled", {"mode": "prompt_lookup", "auto_off": NEVER_OFF}),
    "prompt_lookup_auto_off": ("distilled", {"mode": "prompt_lookup", "auto_off": AutoOff()}),
}
WITHIN = 0.15  # the prediction should land within 15% of the measured speedup


def docstring_texts(n: int, min_chars: int = 500) -> list[str]:
    """English prose: the longest docstring of each stdlib package module (held out: training saw top-level files)."""
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for p in sorted(root.glob("*/*.py")):
        if p.parts[-2] in ("test", "site-packages", "idlelib", "lib2to3", "tkinter", "turtledemo"):
            continue
        try:
            tree = ast.parse(p.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        nodes = [tree, *(x for x in ast.walk(tree) if isinstance(x, ast.FunctionDef | ast.ClassDef))]
        docs = [d for d in (ast.get_docstring(x) for x in nodes) if d and len(d) >= min_chars]
        if docs:
            out.append(max(docs, key=len))
    step = max(1, len(out) // n)
    return out[::step][:n]


def catalog_texts(n: int, min_chars: int = 500) -> list[str]:
    """Non-English text: translated strings of gettext catalogs, a few catalogs per language, round robin."""
    from curation.ingest.mo_catalogs import MoEntry, is_real_text, read_mo

    langs = ("de", "fr", "es", "ru", "ja", "zh_CN", "pt_BR", "it", "pl", "tr", "uk", "ko", "cs", "sv", "el")
    per_lang: dict[str, list[str]] = {}
    for lang in langs:
        texts, buf = [], []
        for mo in sorted(Path("/usr/share/locale", lang, "LC_MESSAGES").glob("*.mo"))[:6]:
            try:
                _, entries = read_mo(mo)
            except Exception:  # a damaged or huge catalog is skipped: the mix only needs some text
                continue
            for e in entries:
                value = e.msgstr[0] if isinstance(e, MoEntry) and e.msgstr and e.msgid else ""
                if is_real_text(value, min_words=3) and not any(ch in value for ch in "%{}$<>\\"):
                    buf.append(value.strip())
                if sum(map(len, buf)) >= min_chars:
                    texts.append("\n".join(buf))
                    buf = []
        if texts:
            per_lang[lang] = texts
    out: list[str] = []
    while len(out) < n and any(per_lang.values()):
        for texts in per_lang.values():
            if texts and len(out) < n:
                out.append(texts.pop(0))
    return out


def prompt_mix(tok: Any, small: bool, prompt_tokens: int) -> list[tuple[str, list[int]]]:
    """(domain, prompt ids): prose, code and non-English, about a third each (50 prompts; 12 with ``--small``)."""
    counts = {"prose": 4, "code": 4, "non_english": 4} if small else {"prose": 17, "code": 17, "non_english": 16}
    code, _ = held_out(tok, counts["code"], prompt_tokens, 0)
    texts = {"prose": docstring_texts(counts["prose"]), "non_english": catalog_texts(counts["non_english"])}
    mix = [("code", ids) for ids in code]
    for domain, ts in texts.items():
        mix += [(domain, tok.encode(t, add_special_tokens=False)[:prompt_tokens]) for t in ts]
    return mix


def run_mix(engines: dict[str, Engine], mix: list[tuple[str, list[int]]], new: int, k: int) -> dict[str, list[dict]]:
    """Every prompt through every mode, interleaved per prompt (a busy machine slows them alike)."""
    modes = {m: v for m, v in MODES.items() if v[0] in engines}
    out: dict[str, list[dict]] = {m: [] for m in modes}
    for domain, ids in mix:
        for mode, (engine, kw) in modes.items():
            extra = {"k": k, **kw} if kw else {}
            toks, st = engines[engine].generate(ids, max_new_tokens=new, **extra)
            out[mode].append({"domain": domain, "tokens": toks, **st})
    return out


def _pooled(reqs: list[dict]) -> dict[str, float]:
    """Sums over requests of what the speedup model needs."""
    keys = ("decode_s", "num_draft_tokens", "num_accepted_draft_tokens", "num_rejection_steps", "num_spec_steps")
    t = {k: sum(r[k] or 0 for r in reqs) for k in keys}
    t["decoded"] = sum(r["new_tokens"] - 1 for r in reqs)
    t["steps"] = sum(r["target_forward_passes"] - 1 for r in reqs)
    t["draft_s"] = sum((r["draft_step_s"] or 0.0) * r["num_draft_tokens"] for r in reqs)
    t["verify_s"] = sum((r["verify_step_s"] or 0.0) * r["num_spec_steps"] for r in reqs)
    t["auto_off"] = sum(bool(r["spec_auto_off"]) for r in reqs)
    return t


def _weighted(reqs: list[dict], speedups: list[float | None]) -> float | None:
    """Σ tokens / Σ (tokens / speedup): the speedup of the whole set from per-request speedups."""
    pairs = [(r["new_tokens"] - 1, x) for r, x in zip(reqs, speedups, strict=True) if x and r["new_tokens"] > 1]
    den = sum(n / x for n, x in pairs)
    return sum(n for n, _ in pairs) / den if den else None


def _predicted_from(r: dict, c: float, v: float) -> float:
    """A request's predicted speedup from its own α and step counts, with a given c and v."""
    steps = r["target_forward_passes"] - 1
    plain = steps - r["num_spec_steps"]
    e_sum = (r["expected_tokens"] or 1.0) * steps
    cost = c * r["num_draft_tokens"] + v * r["num_spec_steps"] + plain
    return e_sum / cost if cost else 1.0


def spec_row(reqs: list[dict], base: list[dict], k: int, served_costs: dict) -> dict[str, Any]:
    """α, acceptance length, c, v and the predicted (as served, and from this run's totals) vs measured decode speedup
    against the target-only run of the same prompts."""
    t, b = _pooled(reqs), _pooled(base)
    plain_step = b["decode_s"] / b["decoded"]  # one target-only decode step, this run
    acc, rej, prop = t["num_accepted_draft_tokens"], t["num_rejection_steps"], t["num_draft_tokens"]
    alpha = acc / (acc + rej) if acc + rej else 0.0
    c = t["draft_s"] / prop / plain_step if prop else 0.0
    v = t["verify_s"] / t["num_spec_steps"] / plain_step if t["num_spec_steps"] else 1.0
    k_mean = prop / t["num_spec_steps"] if t["num_spec_steps"] else 0.0
    measured = b["decode_s"] / t["decode_s"]  # same prompts, same number of decoded tokens (greedy, no EOS)
    served = _weighted(reqs, [r["predicted_speedup"] for r in reqs])
    from_run = _weighted(reqs, [_predicted_from(r, c, v) for r in reqs])
    row = {
        "requests": len(reqs),
        "measured_speedup": measured,
        "alpha": alpha,
        "draft_acceptance_rate": acc / prop if prop else 0.0,
        "mean_acceptance_length": (t["decoded"]) / t["steps"] if t["steps"] else None,
        "mean_k": k_mean,
        "c": c,
        "v": v,
        "c_v_calibrated_at_load": served_costs,
        "predicted_speedup_as_served": served,
        "predicted_speedup_from_run_costs": from_run,
        "predicted_speedup_without_verify_cost": expected_tokens(alpha, k_mean) / (k_mean * c + 1.0) if prop else 1.0,
        "auto_off_requests": t["auto_off"],
        "greedy_equals_target": [r["tokens"] for r in reqs] == [r["tokens"] for r in base],
    }
    for key in ("predicted_speedup_as_served", "predicted_speedup_from_run_costs"):
        if row[key]:
            row[key.replace("predicted_speedup", "error")] = row[key] / measured - 1.0
    row["within_15pct"] = row.get("error_as_served") is not None and abs(row["error_as_served"]) <= WITHIN
    return row


def hf_generate(model: torch.nn.Module, prompt: list[int], new: int, **kw: Any) -> tuple[list[int], float]:
    """transformers' greedy generate (optionally assisted: assistant_model= / prompt_lookup_num_tokens=)."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        y = model.generate(torch.tensor([prompt]), max_new_tokens=new, min_new_tokens=new, do_sample=False, **kw)
        return y[0, len(prompt) :].tolist(), time.perf_counter() - t0


def speculative_section(ctx: dict[str, Any]) -> dict[str, Any]:
    """Target-only vs speculative decoding (draft model, prompt lookup; with and without auto-off) over the prompt mix,
    overall and per domain; transformers' generate / assisted generation on the code prompts for reference."""
    target, draft, mix, new, k = ctx["target"], ctx["draft"], ctx["mix"], ctx["new_tokens"], ctx["k"]
    engines = {"distilled": Engine(target, draft, prompt_lookup_ngram=3)}
    if ctx.get("weak_draft") is not None:
        engines["weak"] = Engine(target, ctx["weak_draft"], prompt_lookup_ngram=3)
    probe, contexts = mix[0][1][:32], (32, 256)  # a short and a long context, as a server calibrates at load
    costs = {
        "speculative": engines["distilled"].calibrate(probe, "speculative", k, contexts=contexts).as_dict(),
        "prompt_lookup": engines["distilled"].calibrate(probe, "prompt_lookup", k, contexts=contexts).as_dict(),
    }
    if "weak" in engines:
        costs["speculative_weak"] = engines["weak"].calibrate(probe, "speculative", k, contexts=contexts).as_dict()
    engines["distilled"].generate(mix[0][1], max_new_tokens=4)  # warm-up
    runs = run_mix(engines, mix, new, k)
    base = runs["target_only"]
    domains = sorted({d for d, _ in mix})
    out: dict[str, Any] = {
        "prompts": {d: sum(x == d for x, _ in mix) for d in domains},
        "calibrated_costs": costs,
        "target_only": {"decode_tokens_per_s": _pooled(base)["decoded"] / _pooled(base)["decode_s"]},
    }
    for mode in runs:
        if mode == "target_only":
            continue
        kind = "speculative_weak" if "weak" in mode else "prompt_lookup" if "lookup" in mode else "speculative"
        served = costs[kind]
        reqs = runs[mode]
        row = spec_row(reqs, base, k, served)
        row["by_domain"] = {
            d: spec_row([r for r in reqs if r["domain"] == d], [r for r in base if r["domain"] == d], k, served)
            for d in domains
        }
        out[mode] = row
    out["hf_reference_on_code"] = hf_section(target, draft, [ids for d, ids in mix if d == "code"], new, k, base)
    return out


def hf_section(target: Any, draft: Any, prompts: list[list[int]], new: int, k: int, base: list[dict]) -> dict:
    """transformers' generate, assisted generation and prompt lookup on the same prompts (vs our target-only)."""
    peers = {
        "hf_generate": {},
        "hf_assisted_generation": {"assistant_model": draft},
        "hf_prompt_lookup": {"prompt_lookup_num_tokens": k},
    }
    ours = [r for r in base if r["domain"] == "code"]
    ours_tps = sum(r["new_tokens"] for r in ours) / sum(r["total_s"] for r in ours)
    hf_generate(target, prompts[0], 4)
    outs: dict[str, list] = {name: [] for name in peers}
    secs = dict.fromkeys(peers, 0.0)
    for p in prompts:  # interleaved per prompt, like ours
        for name, kw in peers.items():
            toks, s = hf_generate(target, p, new, **kw)
            outs[name].append(toks)
            secs[name] += s
    res = {}
    for name in peers:
        same = outs[name] == [r["tokens"] for r in ours]
        res[name] = {"tokens_per_s": len(prompts) * new / secs[name], "greedy_equals_target": same}
    for row in res.values():
        row["speedup_vs_hf_generate"] = row["tokens_per_s"] / res["hf_generate"]["tokens_per_s"]
        row["speedup_vs_our_target_only"] = row["tokens_per_s"] / ours_tps
    return res


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
    weak = weak_draft(Path(where)) if where == str(CACHE) and "speculative" in args.only else None
    n, new = (3, 48) if args.small else (6, 64)
    prompts, texts = held_out(tok, n, prompt_tokens=192, extra=4 + (4 if args.small else 10))
    mix = prompt_mix(tok, args.small, prompt_tokens=192) if "speculative" in args.only else []
    ctx = {
        "target": target,
        "draft": draft,
        "weak_draft": weak,
        "tokenizer": tok,
        "mix": mix,
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
        "prompts": {"speculative": len(mix), "quantization": n},
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
    if set(args.only) != set(SECTIONS) and out.is_file():  # a partial rerun keeps the other sections' results
        kept = {k: v for k, v in json.loads(out.read_text()).items() if k in SECTIONS and k not in args.only}
        result = {**kept, **result, "sections_rerun": args.only}
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
