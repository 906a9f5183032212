"""Recipe: move a trained causal LM onto a new or extended tokenizer, then train the new rows together with LoRA.

1. Map every new token to the old vocabulary: a token whose string exists in the old vocab keeps that row; any other
   token starts as the **mean of the embeddings of its pieces** under the old tokenizer (the old tokenizer's BPE run on
   the token's byte-level string, else the old encoding of its decoded text). Output rows of an untied LM head get
   the same treatment. The initialised model is saved as a plain HF dir (``<out>/init``) with the new tokenizer.
2. LoRA on that model with peft ``trainable_token_indices`` on the new ids (tied heads follow the embedding), so only
   the adapters and the new rows train.
3. Report tokens saved on the held-out domain eval set and bits per byte before (old model, old tokenizer), at
   initialisation and after training: bits per byte divide by bytes, so the two tokenizers compare honestly.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import torch

from finetune.base import load_causal_lm, load_tokenizer
from finetune.config import AdaptConfig
from finetune.data import eval_texts, resolve
from finetune.lora import LoraRecipe
from finetune.metrics import evaluate_texts
from tokenwise.config import load_section
from tokenwise.log import kv
from tokenwise.rundir import RunDir, hash_obj, write_json

log = logging.getLogger(__name__)


def old_pieces(token: str, new_tok, old_tok) -> list[int]:
    """Old-tokenizer ids that spell the new token: BPE on its byte-level string, else re-encoding its text."""
    text = new_tok.convert_tokens_to_string([token])
    try:
        ids = [t.id for t in old_tok.backend_tokenizer.model.tokenize(token)]
    except Exception:  # noqa: BLE001 - tokenizers raises plain Exception for strings outside its alphabet
        ids = []
    if not ids or old_tok.convert_tokens_to_string(old_tok.convert_ids_to_tokens(ids)) != text:
        ids = old_tok(text, add_special_tokens=False)["input_ids"]
    return ids


def token_mapping(old_tok, new_tok) -> tuple[dict[int, int], dict[int, list[int]]]:
    """(new id -> old id for tokens both vocabularies share, new id -> old piece ids for the rest)."""
    old_vocab = old_tok.get_vocab()
    copy, pieces = {}, {}
    for token, nid in sorted(new_tok.get_vocab().items(), key=lambda kv: kv[1]):
        if token in old_vocab:
            copy[nid] = old_vocab[token]
        else:
            pieces[nid] = old_pieces(token, new_tok, old_tok)
    return copy, pieces


def _remap(old: torch.Tensor, n_new: int, copy: dict[int, int], pieces: dict[int, list[int]], init: str):
    # old: [V_old, H] -> new: [V_new, H]
    new = torch.empty(n_new, old.size(1), dtype=old.dtype)
    torch.nn.init.normal_(new, std=float(old.std()))
    fallback = old.mean(0)
    for nid, oid in copy.items():
        new[nid] = old[oid]
    if init == "mean":
        for nid, ids in pieces.items():
            new[nid] = old[ids].mean(0) if ids else fallback
    return new


def init_new_model(base_dir: str, old_tok, new_tok, init: str = "mean"):
    """The base model with embeddings (and an untied head) remapped to ``new_tok``; returns (model, new token ids)."""
    model = load_causal_lm(base_dir, torch.float32)
    copy, pieces = token_mapping(old_tok, new_tok)
    n_new = max(len(new_tok), max(new_tok.get_vocab().values()) + 1)
    emb_in = model.get_input_embeddings().weight.detach().clone()
    out = model.get_output_embeddings()
    untied = out is not None and out.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    emb_out = out.weight.detach().clone() if untied else None
    model.resize_token_embeddings(n_new, mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(_remap(emb_in, n_new, copy, pieces, init))
        if untied:
            model.get_output_embeddings().weight.copy_(_remap(emb_out, n_new, copy, pieces, init))
    model.config.vocab_size = n_new
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.config, key, getattr(new_tok, key))
    return model, sorted(pieces)


class AdaptRecipe(LoraRecipe):
    """LoRA on the initialised model with the new rows trainable (peft ``trainable_token_indices``)."""

    def __init__(self, cfg: AdaptConfig, new_ids: list[int], **kw):
        super().__init__(cfg, **kw)
        self.new_ids = new_ids

    def _peft_config(self):
        pc = super()._peft_config()
        if self.new_ids:
            pc.trainable_token_indices = self._token_targets()
        return pc

    def _token_targets(self) -> dict[str, list[int]]:
        base = load_causal_lm(self.base_dir)
        names = {id(m): n.rsplit(".", 1)[-1] for n, m in base.named_modules()}
        targets = {names[id(base.get_input_embeddings())]: self.new_ids}
        out = base.get_output_embeddings()
        if out is not None and not base.config.get_text_config().tie_word_embeddings:
            targets[names[id(out)]] = self.new_ids
        return targets


def token_counts(texts: list[str], old_tok, new_tok) -> dict:
    """Tokens of ``texts`` under both tokenizers and the share the new one saves."""
    old_n = sum(len(old_tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    new_n = sum(len(new_tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    return {"old_tokens": old_n, "new_tokens": new_n, "tokens_saved": old_n - new_n, "saved_share": 1 - new_n / old_n,
            "documents": len(texts), "old_tokens_per_doc": old_n / max(len(texts), 1),
            "new_tokens_per_doc": new_n / max(len(texts), 1)}  # fmt: skip


def save_init(model, new_tok, out: Path) -> None:
    """The initialised model + new tokenizer as a plain HF dir (written to a temp dir, then renamed)."""
    tmp = out.parent / f".tmp-{uuid.uuid4().hex[:8]}"
    model.save_pretrained(tmp, safe_serialization=True)
    new_tok.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def adapt(cfg: AdaptConfig, run_dir: str | None, out_dir: str, texts=None, evals: list[str] | None = None) -> dict:
    """Initialise, train and save; returns metrics with tokens saved and bits per byte before/init/after."""
    out = Path(out_dir)
    base_dir = resolve(cfg.base, run_dir, "models")
    old_tok = load_tokenizer(resolve(cfg.tokenizer, run_dir, "tokenizers") if cfg.tokenizer else base_dir)
    new_tok = load_tokenizer(resolve(cfg.new_tokenizer, run_dir, "tokenizers"))
    if evals is None:
        evals = eval_texts(resolve(cfg.data.curated, run_dir, "curated"), cfg.data)
    model, new_ids = init_new_model(base_dir, old_tok, new_tok, cfg.init)
    out.mkdir(parents=True, exist_ok=True)
    save_init(model, new_tok, out / "init")
    log.info(kv(new_tokens=len(new_ids), vocab_old=len(old_tok), vocab_new=len(new_tok)))
    before = evaluate_texts(load_causal_lm(base_dir), old_tok, evals, cfg.data.seq_len, cfg.batch_size)
    lora_cfg = cfg.model_copy(update={"base": str(out / "init"), "tokenizer": None})
    recipe = AdaptRecipe(lora_cfg, new_ids, run_dir=run_dir, out_dir=str(out)).setup(texts, evals)
    recipe.train()
    m = recipe.save()
    m.update(
        tokenizer_old=len(old_tok),
        tokenizer_new=len(new_tok),
        new_token_ids=len(new_ids),
        eval_tokens=token_counts(evals, old_tok, new_tok),
        bits_per_byte_old_model=before.bits_per_byte,
        bits_per_byte_init=m.get("bits_per_byte_before"),
    )
    write_json(out / "metrics.json", m)
    return m


def run_adapt(cfg: AdaptConfig, run_dir: str) -> dict:
    """Adapt into ``<run>/models/<output>/`` (skipped when its marker matches); returns a summary."""
    rd = RunDir(run_dir)
    stage = f"models/{cfg.output}"
    # what it reads: the config, the base model's and the new tokenizer's completion markers
    base = Path(resolve(cfg.base, run_dir, "models"))
    base_marker = next((d / "_DONE.json" for d in (base, *base.parents) if (d / "_DONE.json").is_file()), None)
    tok_meta = Path(resolve(cfg.new_tokenizer, run_dir, "tokenizers")) / "meta.json"
    key = hash_obj({"cfg": cfg.model_dump(), "base": base_marker.read_text() if base_marker else None,
                    "tokenizer": tok_meta.read_text() if tok_meta.is_file() else None})  # fmt: skip
    if rd.is_done(stage, key):
        return rd.marker(stage)["summary"]
    m = adapt(cfg, run_dir, rd.stage("models", cfg.output))
    keys = ("bits_per_byte_old_model", "bits_per_byte_init", "eval_bits_per_byte", "eval_tokens", "new_token_ids")
    summary = {k: m[k] for k in keys} | {"out": rd.stage("models", cfg.output)}
    rd.mark_done(stage, key, summary)
    return summary


def summarize(m: dict) -> str:
    """One line: tokens saved and bits per byte old -> init -> trained."""
    t = m["eval_tokens"]
    return (
        f"{m['new_token_ids']} new tokens; eval tokens {t['old_tokens']} -> {t['new_tokens']} "
        f"({100 * t['saved_share']:.1f}% saved); bpb {m['bits_per_byte_old_model']:.3f} (old) -> "
        f"{m['bits_per_byte_init']:.3f} (init) -> {m['eval_bits_per_byte']:.3f} (trained)"
    )


def adapt_stage(config_path: str, run_dir: str) -> str:
    """Stage ``adapt``: move the `adapt` section's base onto its new tokenizer; one-line summary."""
    m = run_adapt(load_section(config_path, "adapt", AdaptConfig), run_dir)
    return f"{summarize(m)} -> {m['out']}"
