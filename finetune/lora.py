"""Recipe: LoRA fine-tuning (peft) of any local causal LM on curated data, resumable exactly.

``setup`` loads and checks everything (base dir, tokenizer/vocab fit, seq_len, rank, data) before a step is taken;
``train`` runs the loop (grad accumulation, cosine schedule with warmup, clipping, eval every N steps, checkpoints of
adapter + optimizer + scheduler + RNG + data position); ``save`` writes the adapter (safetensors, loads with
``PeftModel.from_pretrained``), an optional merged model and ``metrics.json``. CUDA runs bf16 autocast with gradient
checkpointing, CPU runs fp32; the same code decides at run time. A non-finite loss stops the run, keeps the last good
checkpoint and raises :class:`TrainingDiverged`. ``method="full"`` trains every weight instead (for the benchmark).
"""

from __future__ import annotations

import logging
import random
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from finetune.base import (
    BaseModelError,
    check_base_dir,
    check_compatible,
    count_params,
    load_causal_lm,
    load_tokenizer,
)
from finetune.config import LoraConfig
from finetune.data import PackedBatches, eval_texts, resolve, train_texts
from finetune.metrics import evaluate_texts
from tokenwise.config import load_section
from tokenwise.device import PeakMemory, pick_runtime
from tokenwise.log import kv
from tokenwise.rundir import RunDir, hash_obj, write_json

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the message names the last good checkpoint."""


class LoraRecipe:
    """LoRA fine-tuning as setup / train / save (see module docstring)."""

    def __init__(self, cfg: LoraConfig, run_dir: str | None = None, out_dir: str | None = None, method: str = "lora"):
        self.cfg, self.run_dir, self.method = cfg, run_dir, method
        self.out = Path(out_dir or RunDir(run_dir).stage("models", cfg.output))
        self.step = 0
        self.history: dict[str, list] = {"train": [], "eval": []}
        self.train_tokens, self.train_seconds = 0, 0.0

    # ---- setup -------------------------------------------------------------------------------------------------
    @torch.inference_mode(False)  # models must not be built as inference tensors, whatever the caller's thread mode
    @torch.enable_grad()
    def setup(self, texts=None, evals: list[str] | None = None) -> LoraRecipe:
        """Load and check model, tokenizer and data; wrap with LoRA; build optimizer and schedule; resume if asked.

        ``texts``/``evals`` override the curated data (a callable returning an endless text iterator, and a list).
        """
        cfg = self.cfg
        self.rt = pick_runtime(cfg.device, cfg.gradient_checkpointing, cfg.threads)
        self.base_dir = resolve(cfg.base, self.run_dir, "models")
        check_base_dir(self.base_dir)
        tok_dir = resolve(cfg.tokenizer, self.run_dir, "tokenizers") if cfg.tokenizer else self.base_dir
        self.tok = load_tokenizer(tok_dir)
        self.model = self._setup_model()
        self._setup_data(texts, evals)
        self._setup_optimizer()
        if cfg.resume:
            self._resume_latest()
        return self

    def _load_base(self):
        return load_causal_lm(self.base_dir, self.rt.dtype if self.method == "lora" else torch.float32)

    def _setup_model(self):
        base = self._load_base()
        check_compatible(base, self.tok, self.cfg.data.seq_len, self.base_dir)
        torch.manual_seed(self.cfg.seed)
        model = self._wrap(base) if self.method == "lora" else base
        if self.rt.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.trainable, self.total = count_params(model)
        log.info(kv(base=self.base_dir, method=self.method, trainable=self.trainable, total=self.total,
                    steps=self.cfg.steps))  # fmt: skip
        return model.to(self.rt.device).train()

    def _peft_config(self):
        from peft import LoraConfig as PeftLoraConfig  # heavy: deferred until used

        c = self.cfg
        return PeftLoraConfig(
            r=c.rank,
            lora_alpha=c.alpha,
            lora_dropout=c.dropout,
            target_modules=c.target_modules,
            task_type="CAUSAL_LM",
        )

    def _wrap(self, base):
        from peft import get_peft_model  # heavy: deferred until used

        try:
            return get_peft_model(base, self._peft_config())
        except ValueError as e:
            names = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules() if _is_linear(m)})
            raise BaseModelError(
                f"{self.base_dir}: target_modules {self.cfg.target_modules} do not fit this model ({e}); "
                f"its linear modules are {names} (or use all-linear)"
            ) from e

    def _setup_data(self, texts, evals) -> None:
        c = self.cfg
        if texts is None:
            curated = resolve(c.data.curated, self.run_dir, "curated")
            texts = lambda: train_texts(curated, c.data, self.run_dir, c.seed)  # noqa: E731
            evals = eval_texts(curated, c.data) if evals is None else evals
        self.batches = PackedBatches(texts, self.tok, c.data.seq_len, c.batch_size)
        self.evals = evals or []
        next(PackedBatches(texts, self.tok, c.data.seq_len, 1))  # empty training set -> DataError before training

    def _setup_optimizer(self) -> None:
        from transformers import get_cosine_schedule_with_warmup  # heavy: deferred until used

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.sched = get_cosine_schedule_with_warmup(self.opt, self.cfg.warmup_steps, self.cfg.steps)

    # ---- train -------------------------------------------------------------------------------------------------
    @torch.inference_mode(False)
    @torch.enable_grad()
    def train(self, max_steps: int | None = None) -> dict:
        """Run until ``cfg.steps`` (or ``max_steps`` more steps); returns the metrics so far."""
        c, end = self.cfg, self.cfg.steps if max_steps is None else min(self.cfg.steps, self.step + max_steps)
        if self.step == 0 and not self.history["eval"] and self.evals:
            # the before figure is on the same full eval set as the final one (the curve uses a quick prefix of it)
            self.history["before"] = self._eval(full=True)
            self._eval()
        with PeakMemory(self.rt.device) as self.mem:
            while self.step < end:
                t0 = time.perf_counter()
                loss = self._train_step()
                self.train_seconds += time.perf_counter() - t0
                self.step += 1
                self.history["train"].append({"step": self.step, "loss": loss, "lr": self.sched.get_last_lr()[0]})
                if self.step % max(1, c.steps // 20) == 0:  # progress (flows read step=), ~20 lines per run
                    log.info(kv(step=self.step, steps=c.steps, loss=f"{loss:.4f}"))
                if self.step % max(1, c.steps // 10) == 0:  # ~10 progress lines per run (flows show them as progress)
                    log.info(kv(step=self.step, loss=f"{loss:.4f}"))
                if self.step % c.eval_every == 0 and self.evals:
                    self._eval()
                if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                    self.save_checkpoint()
        return self.metrics()

    def _train_step(self) -> float:
        total = 0.0
        for _ in range(self.cfg.grad_accum):
            batch = {k: v.to(self.rt.device) for k, v in next(self.batches).items()}
            with torch.autocast(self.rt.device.type, dtype=self.rt.dtype, enabled=self.rt.dtype != torch.float32):
                loss = self.model(**batch).loss / self.cfg.grad_accum
            if not torch.isfinite(loss):
                self._diverged(loss.item())
            loss.backward()
            total += loss.item()
            self.train_tokens += int(batch["attention_mask"].sum())
        params = [p for p in self.model.parameters() if p.requires_grad]
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return round(total, 6)

    def _diverged(self, value: float) -> None:
        last = self.latest_checkpoint()
        self.opt.zero_grad(set_to_none=True)
        write_json(self.out / "metrics.json", {**self.metrics(), "status": "diverged", "last_checkpoint": last})
        raise TrainingDiverged(
            f"loss became {value} at step {self.step + 1}; stopped. Last good checkpoint: {last or 'none'}. "
            "Lower lr or raise warmup_steps, then rerun to resume from it."
        )

    def _eval(self, full: bool = False) -> dict:
        n = len(self.evals) if full else self.cfg.eval_batches * self.cfg.batch_size
        res = evaluate_texts(self.model, self.tok, self.evals[:n], self.cfg.data.seq_len, self.cfg.batch_size)
        row = {"step": self.step, "loss": res.loss, "bits_per_byte": res.bits_per_byte, "docs": res.docs}
        if not full:
            self.history["eval"].append(row)
            log.info(kv(step=self.step, eval_loss=f"{res.loss:.4f}", bpb=f"{res.bits_per_byte:.4f}"))
        return res.as_dict()

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def latest_checkpoint(self) -> str | None:
        """Path of the newest complete checkpoint, or None."""
        done = sorted(p for p in self.checkpoint_dir().glob("step-*") if (p / "state.pt").is_file())
        return str(done[-1]) if done else None

    def save_checkpoint(self) -> str:
        """Trainable weights, optimizer, scheduler, RNG and data position; written to a temp dir then renamed."""
        final = self.checkpoint_dir() / f"step-{self.step:07d}"
        tmp = self.checkpoint_dir() / f".tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        trainable = {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        state = {
            "step": self.step,
            "trainable": trainable,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "data": self.batches.state_dict(),
            "rng": _rng_state(),
            "history": self.history,
            "train_tokens": self.train_tokens,
            "train_seconds": self.train_seconds,
        }
        torch.save(state, tmp / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        self._prune_checkpoints()
        return str(final)

    def _prune_checkpoints(self) -> None:
        done = sorted(p for p in self.checkpoint_dir().glob("step-*") if (p / "state.pt").is_file())
        for old in done[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old)

    def load_checkpoint(self, path: str) -> None:
        """Restore everything :meth:`save_checkpoint` wrote."""
        state = torch.load(Path(path) / "state.pt", weights_only=False)
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, t in state["trainable"].items():
                params[n].copy_(t.to(params[n].device))
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.batches.load_state_dict(state["data"])
        _set_rng_state(state["rng"])
        self.step, self.history = state["step"], state["history"]
        self.train_tokens, self.train_seconds = state["train_tokens"], state["train_seconds"]
        log.info(kv(resumed=path, step=self.step))

    def _resume_latest(self) -> None:
        last = self.latest_checkpoint()
        if last:
            self.load_checkpoint(last)

    # ---- save --------------------------------------------------------------------------------------------------
    def metrics(self) -> dict:
        """Loss curves, trainable share, throughput and peak memory so far."""
        mem = getattr(self, "mem", None)
        return {
            "method": self.method,
            "base": self.base_dir,
            "device": self.rt.name,
            "dtype": str(self.rt.dtype),
            "gradient_checkpointing": self.rt.gradient_checkpointing,
            "steps": self.step,
            "trainable_params": self.trainable,
            "total_params": self.total,
            "trainable_share": self.trainable / self.total,
            "train_tokens": self.train_tokens,
            "train_seconds": self.train_seconds,
            "tokens_per_s": self.train_tokens / self.train_seconds if self.train_seconds else None,
            "peak_memory_bytes": mem.peak if mem else None,
            "peak_memory_kind": mem.kind if mem else None,
            "train_curve": self.history["train"],
            "eval_curve": self.history["eval"],
            "config": self.cfg.model_dump(),
        }

    def save(self) -> dict:
        """Final eval, adapter (+ merged model when configured) and metrics.json; returns the metrics."""
        m = self.metrics()
        if self.evals:
            final = self._eval(full=True)
            before = self.history.get("before") or {}
            m.update(
                eval=final,
                eval_bits_per_byte=final["bits_per_byte"],
                eval_perplexity=final["perplexity"],
                bits_per_byte_before=before.get("bits_per_byte"),
            )
        if self.method == "lora":
            self.model.save_pretrained(self.out / "adapter", safe_serialization=True)
            self.tok.save_pretrained(self.out / "adapter")
            if self.cfg.merge:
                self.save_merged(self.out / "merged")
        m["status"] = "ok"
        write_json(self.out / "metrics.json", m)
        return m

    def save_merged(self, out: Path) -> None:
        """The base with the adapter merged in, as a plain HF dir (the in-memory adapter stays unmerged)."""
        from peft import PeftModel  # heavy: deferred until used

        base = load_causal_lm(self.base_dir, torch.float32)
        merged = PeftModel.from_pretrained(base, str(self.out / "adapter")).merge_and_unload()
        tmp = out.parent / f".tmp-{uuid.uuid4().hex[:8]}"
        merged.save_pretrained(tmp, safe_serialization=True)
        self.tok.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)


def _is_linear(m: torch.nn.Module) -> bool:
    return isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_lora(cfg: LoraConfig, run_dir: str) -> dict:
    """Setup, train and save one LoRA run (skipped when its marker matches); returns metrics."""
    rd = RunDir(run_dir)
    stage = f"models/{cfg.output}"
    key = hash_obj({"cfg": cfg.model_dump(), "base": _base_marker(rd, cfg.base)})
    if rd.is_done(stage, key):
        log.info(kv(output=cfg.output, skipped="marker matches"))
        return rd.marker(stage)["summary"]
    recipe = LoraRecipe(cfg, run_dir).setup()
    recipe.train()
    m = recipe.save()
    summary = {k: m.get(k) for k in ("bits_per_byte_before", "eval_bits_per_byte", "trainable_share", "train_seconds")}
    summary["out"] = str(recipe.out)
    rd.mark_done(stage, key, summary)
    return summary


def _base_marker(rd: RunDir, base: str) -> dict | None:
    return rd.marker(f"models/{base[4:]}") if base.startswith("run:") else None


def summarize(m: dict) -> str:
    """One line: bits per byte before/after, trainable share, time, where."""
    return (
        f"eval bpb {m['bits_per_byte_before']:.3f} -> {m['eval_bits_per_byte']:.3f}, "
        f"trainable {100 * m['trainable_share']:.2f}%, {m['train_seconds']:.0f}s -> {m['out']}"
    )


def demo_stage(config_path: str, run_dir: str) -> str:
    """Demo stage ``lora``: fine-tune the target on one domain; adapter under ``<run>/models/<output>/``."""
    return summarize(run_lora(load_section(config_path, "lora", LoraConfig), run_dir))
