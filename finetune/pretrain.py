"""Recipe: train small Llama models from scratch on the curated corpus with one tokenizer.

The demo trains a **draft** for the pretrained target (Gemma): a small Llama on the target's tokenizer restricted to
the compact model's kept vocabulary (``vocab:``), so its embedding and head hold tens of thousands of rows instead of
262k (the serving stage speculates with the draft and verifies with the target). Tests train tiny targets and drafts
from scratch on run tokenizers the same way. A model may distil from one trained before it, or from a model dir of
the run with the same vocabulary (``distill_from``): its loss mixes
cross-entropy on the data with KL to the teacher's next-token distribution, which raises draft/target agreement (the
acceptance rate speculative decoding lives on). Each model is saved as a standard HF dir (safetensors + tokenizer) with
``metrics.json`` (loss curve, eval bits per byte, perplexity, params, tokens/s, peak memory, time)."""

from __future__ import annotations

import logging
import math
import shutil
import time
import uuid
from pathlib import Path

import torch
import torch.nn.functional as F

from finetune.base import count_params, load_causal_lm, load_tokenizer
from finetune.config import ModelSpec, PretrainConfig
from finetune.data import PackedBatches, eval_sets, resolve, train_texts
from finetune.metrics import IGNORE, evaluate_sets
from tokenwise.config import load_section
from tokenwise.device import PeakMemory, Runtime, pick_runtime
from tokenwise.log import kv
from tokenwise.rundir import RunDir, hash_obj, write_json
from tokenwise.vocab import KeptVocab, LocalTokenizer

log = logging.getLogger(__name__)


def llama_config(spec: ModelSpec, tokenizer, seq_len: int, max_positions: int = 512):
    """A LlamaConfig of the spec's shape for this tokenizer."""
    from transformers import LlamaConfig  # heavy: deferred until used

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads or spec.heads,
        max_position_embeddings=max(seq_len, max_positions),
        tie_word_embeddings=spec.tie_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_model(spec: ModelSpec, tokenizer, seq_len: int, seed: int, max_positions: int = 512):
    """A freshly initialised LlamaForCausalLM (seeded)."""
    from transformers import LlamaForCausalLM  # heavy: deferred until used

    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(spec, tokenizer, seq_len, max_positions))


def distill_loss(student_logits, teacher_logits, labels, alpha: float, temperature: float) -> torch.Tensor:
    """(1-alpha) * CE(labels) + alpha * T^2 * KL(teacher || student) over positions with a label."""
    # logits: [B, S, V]; position s predicts labels[:, s+1]
    s, t, y = student_logits[:, :-1].float(), teacher_logits[:, :-1].float(), labels[:, 1:]
    keep = y != IGNORE
    ce = F.cross_entropy(s[keep], y[keep])
    kl = F.kl_div(
        F.log_softmax(s[keep] / temperature, -1),
        F.log_softmax(t[keep] / temperature, -1),
        log_target=True,
        reduction="batchmean",
    )
    return (1 - alpha) * ce + alpha * temperature**2 * kl


def cosine_lr(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warmup to ``peak`` then cosine decay to 10% of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train_model(spec: ModelSpec, model, batches, rt: Runtime, cfg: PretrainConfig, teacher=None) -> dict:
    """Train ``model`` for ``spec.steps``; returns the loss curve and throughput."""
    model.to(rt.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    curve, tokens, t0 = [], 0, time.perf_counter()
    for step in range(spec.steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, spec.lr, spec.warmup_steps, spec.steps)
        batch = {k: v.to(rt.device) for k, v in next(batches).items()}
        with torch.autocast(rt.device.type, dtype=rt.dtype, enabled=rt.dtype != torch.float32):
            out = model(**batch)
            loss = out.loss
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss = distill_loss(
                    out.logits, t_logits, batch["labels"], spec.distill_alpha, spec.distill_temperature
                )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{spec.name}: loss became {loss.item()} at step {step}; lower lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
        curve.append({"step": step + 1, "loss": round(loss.item(), 5)})
        if (step + 1) % max(1, spec.steps // 10) == 0:
            log.info(kv(model=spec.name, step=step + 1, loss=f"{loss.item():.3f}"))
    seconds = time.perf_counter() - t0
    return {"train_curve": curve, "train_tokens": tokens, "train_seconds": seconds, "tokens_per_s": tokens / seconds}


def save_model(model, tokenizer, out: str, metrics: dict) -> None:
    """Save a standard HF dir (safetensors, tokenizer, metrics.json) via a temp dir renamed into place."""
    final = Path(out)
    tmp = final.parent / f".tmp-{uuid.uuid4().hex[:8]}-{final.name}"
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    write_json(tmp / "metrics.json", metrics)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def pretrain_one(
    spec: ModelSpec, cfg: PretrainConfig, run_dir: str, tok, evals: dict[str, list[str]], rt: Runtime
) -> dict:
    """Build, train, evaluate and save one model; returns its metrics."""
    rd = RunDir(run_dir)
    curated = resolve(cfg.data.curated, run_dir, "curated")
    batches = PackedBatches(
        lambda: train_texts(curated, cfg.data, run_dir, cfg.seed), tok, cfg.data.seq_len, spec.batch_size
    )
    model = build_model(spec, tok, cfg.data.seq_len, cfg.seed, cfg.max_positions)
    teacher = None
    if spec.distill_from:
        teacher = load_causal_lm(resolve(spec.distill_from, run_dir, "models") if spec.distill_from.startswith("run:")
                                 else rd.stage("models", spec.distill_from), rt.dtype, rt.device).eval()  # fmt: skip
        _check_teacher_vocab(spec, teacher, tok)
    _, n_params = count_params(model)
    log.info(kv(model=spec.name, params=n_params, steps=spec.steps, distill_from=spec.distill_from))
    with PeakMemory(rt.device) as mem:
        metrics = train_model(spec, model, batches, rt, cfg, teacher)
    ev, by_domain = evaluate_sets(model, tok, evals, cfg.data.seq_len, device=rt.device)
    metrics = {
        "name": spec.name,
        "params": n_params,
        "spec": spec.model_dump(),
        "tokenizer": cfg.tokenizer_of(spec),
        "device": rt.name,
        "dtype": str(rt.dtype),
        "eval": ev.as_dict(),
        "eval_bits_per_byte": ev.bits_per_byte,
        "eval_perplexity": ev.perplexity,
        "eval_by_domain": {d: r.as_dict() for d, r in by_domain.items()},
        "peak_memory_bytes": mem.peak,
        "peak_memory_kind": mem.kind,
        **metrics,
    }
    save_model(model.float().cpu(), tok, rd.stage("models", spec.name), metrics)
    log.info(kv(model=spec.name, eval_bpb=f"{ev.bits_per_byte:.3f}", seconds=f"{metrics['train_seconds']:.0f}"))
    return metrics


def _run_marker(rd: RunDir, spec: str | None) -> str | None:
    """Inputs hash of a run model a model depends on (``run:NAME``), so rebuilding it retrains this one."""
    if not spec or not spec.startswith("run:"):
        return None
    marker = rd.marker(f"models/{spec[4:].removeprefix('models/')}")
    return marker.get("inputs_hash") if marker else None


def _check_teacher_vocab(spec: ModelSpec, teacher, tok) -> None:
    n_teacher, n_student = teacher.get_output_embeddings().out_features, len(tok)
    if n_teacher != n_student:
        raise ValueError(
            f"{spec.name}: teacher {spec.distill_from} predicts {n_teacher} tokens, this model {n_student}; distil "
            "only from a model with the same (kept) vocabulary, e.g. the compact target for a drafter on its vocab"
        )


@torch.inference_mode(False)  # a caller's thread may sit in inference mode (e.g. a suspended generation): train anyway
@torch.enable_grad()
def run_pretrain(cfg: PretrainConfig, run_dir: str) -> dict[str, dict]:
    """Train every model of the config in order (teachers first); skips models whose marker matches."""
    rd = RunDir(run_dir)
    toks: dict[str, object] = {}
    rt = pick_runtime(threads=cfg.threads)
    evals: dict[str, list[str]] | None = None  # read once, and only when a model is actually trained
    out: dict[str, dict] = {}
    for spec in cfg.models:
        stage = f"models/{spec.name}"
        # this model's own inputs: shared settings, its spec and tokenizer, its teacher's result (not its siblings')
        shared = cfg.model_dump(exclude={"models", "threads"})
        key = hash_obj({"cfg": shared, "spec": spec.model_dump(), "tokenizer": cfg.tokenizer_of(spec),
                        "teacher": out.get(spec.distill_from or "") or _run_marker(rd, spec.distill_from),
                        "vocab": _run_marker(rd, spec.vocab)})  # fmt: skip
        if rd.is_done(stage, key):
            out[spec.name] = rd.marker(stage)["summary"]
            log.info(kv(model=spec.name, skipped="marker matches"))
            continue
        name = cfg.tokenizer_of(spec)
        if name not in toks:
            toks[name] = load_tokenizer(resolve(name, run_dir, "tokenizers"))
        tok = toks[name]
        if spec.vocab:
            kept = KeptVocab.load(resolve(spec.vocab, run_dir, "models"))
            tok = LocalTokenizer(tok, kept.top(spec.vocab_top, tok) if spec.vocab_top else kept)
        evals = evals or eval_sets(resolve(cfg.data.curated, run_dir, "curated"), cfg.data)
        m = pretrain_one(spec, cfg, run_dir, tok, evals, rt)
        out[spec.name] = {k: m[k] for k in ("params", "eval_bits_per_byte", "train_seconds", "tokens_per_s")}
        rd.mark_done(stage, key, out[spec.name])
    return out


def summarize(results: dict[str, dict]) -> str:
    """One line: each model's params, eval bits per byte and training time."""
    return "; ".join(
        f"{n}: {m['params'] / 1e6:.1f}M params, eval {m['eval_bits_per_byte']:.3f} bpb, {m['train_seconds']:.0f}s"
        for n, m in results.items()
    )


def demo_stage(config_path: str, run_dir: str) -> str:
    """Demo stage ``pretrain``: target and draft models under ``<run>/models/``."""
    cfg = load_section(config_path, "pretrain", PretrainConfig)
    return summarize(run_pretrain(cfg, run_dir))
