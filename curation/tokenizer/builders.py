"""Untrained ``tokenizers`` pipelines as a config describes them: normalizer, pre-tokenizer, model, trainer."""

from __future__ import annotations

from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from curation.tokenizer.config import TokenizerTrainConfig

# GPT-4 (cl100k) pre-tokenization: letters with one leading non-letter, digits in runs of 1-3, punctuation runs,
# newlines and whitespace runs kept apart so code indentation becomes few tokens. One change: combining marks
# (\p{M}) stay inside words; the original \p{L}+ cuts Devanagari/Tamil words at every vowel sign.
GPT4_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{M}\p{N}]?[\p{L}\p{M}]+|\p{N}{1,3}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

def build_tokenizer(cfg: TokenizerTrainConfig) -> tuple[Any, Any]:
    """An untrained ``tokenizers.Tokenizer`` and its trainer, as the config describes."""
    byte_level = cfg.pre_tokenization != "metaspace"
    if cfg.model == "bpe":
        tok = Tokenizer(models.BPE(unk_token=cfg.unk_token))
    else:
        tok = Tokenizer(models.Unigram())
    if cfg.normalization != "none":
        tok.normalizer = normalizers.NFC() if cfg.normalization == "nfc" else normalizers.NFKC()
    if cfg.pre_tokenization == "gpt4_byte_level":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(GPT4_PATTERN), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    elif cfg.pre_tokenization == "line_byte_level":
        # one pre-token per line, its leading newlines included, so "\n    return" can become one token
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(r"\n*[^\n]*"), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    elif cfg.pre_tokenization == "gpt2_byte_level":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.ByteLevel() if byte_level else decoders.Metaspace(replacement="▁", prepend_scheme="first")
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    common = {"vocab_size": cfg.vocab_size, "special_tokens": cfg.special_tokens, "show_progress": False}
    if cfg.model == "bpe":
        limit = {} if byte_level else {"limit_alphabet": cfg.limit_alphabet}
        trainer = trainers.BpeTrainer(min_frequency=cfg.min_frequency, initial_alphabet=alphabet, **limit, **common)
    else:
        trainer = trainers.UnigramTrainer(initial_alphabet=alphabet, unk_token=cfg.unk_token, **common)
    return tok, trainer
