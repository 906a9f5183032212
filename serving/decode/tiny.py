"""Tiny Llama models for tests and the routing benchmark: a BPE tokenizer trained on stdlib text, random-init or
briefly trained models of chosen sizes, saved as ordinary HF directories so the real loading code is exercised."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def stdlib_texts(limit: int = 200, max_chars: int = 4000, skip: int = 0) -> list[str]:
    """Chunks of Python standard-library source, deterministic order (a local corpus that needs no download)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.stat().st_size > 2000)
    out = []
    for p in files[skip:]:
        out.append(p.read_text(encoding="utf-8", errors="replace")[:max_chars])
        if len(out) >= limit:
            break
    return out


def train_tokenizer(texts: list[str], out_dir: str | Path, vocab_size: int = 512) -> Path:
    """Train a byte-level BPE and save it as an HF tokenizer dir (tokenizer.json + config) with ``</s>`` as EOS."""
    from transformers import PreTrainedTokenizerFast  # heavy: deferred until used

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    out = Path(out_dir)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>").save_pretrained(str(out))
    return out


def make_tiny_llama(
    out_dir: str | Path,
    tokenizer_dir: str | Path,
    hidden: int = 32,
    layers: int = 1,
    seed: int = 0,
    train_texts: list[str] | None = None,
    steps: int = 0,
    seq_len: int = 64,
) -> Path:
    """Save a tiny LlamaForCausalLM (random init, or ``steps`` of AdamW on ``train_texts``) with its tokenizer."""
    import torch  # heavy: deferred until used
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM  # heavy: deferred until used

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 16),
        num_key_value_heads=max(1, hidden // 16),
        max_position_embeddings=1024,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    if steps and train_texts:
        _train(model, tok, train_texts, steps, seq_len, seed)
    out = Path(out_dir)
    model.eval().save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def _train(model, tok, texts: list[str], steps: int, seq_len: int, seed: int) -> None:
    import torch  # heavy: deferred until used

    ids = torch.tensor([i for t in texts for i in tok.encode(t, add_special_tokens=False)])
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - seq_len - 1, (16,), generator=g)
        batch = torch.stack([ids[s : s + seq_len] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


def tiny_pair(root: str | Path, train: bool = False, steps: tuple[int, int] = (60, 150)) -> dict[str, Path]:
    """A shared tokenizer plus a small (1 layer, 32 wide) and a large (2 layers, 64 wide) model under ``root``.

    ``train``: a few AdamW steps on stdlib text so the large model really is better (the routing benchmark); tests
    use random init, which is enough for exactness and routing mechanics.
    """
    root = Path(root)
    texts = stdlib_texts(60) if train else stdlib_texts(20)
    tok = train_tokenizer(texts, root / "tok", vocab_size=384)
    small = make_tiny_llama(root / "small", tok, 32, 1, seed=1, train_texts=texts, steps=steps[0] if train else 0)
    large = make_tiny_llama(root / "large", tok, 64, 2, seed=2, train_texts=texts, steps=steps[1] if train else 0)
    return {"tokenizer": tok, "small": small, "large": large}
