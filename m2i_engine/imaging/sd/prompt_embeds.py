"""Prompt → text embeddings with each phrase weighted by the confidence of the tag it came from.

The prompt builder gives every phrase a weight (0.6 … 1.2, from the tag's confidence); plain
diffusers would ignore it. :class:`PromptEncoder` tokenises the prompt text exactly as the pipeline
does, maps every token back to the phrase it came from (tokenizer offsets), and scales that token's
embedding by the phrase's weight, then restores the embedding's mean — the A1111/"emphasis" method,
which needs no extra library and works for SD 1.5 (one CLIP) and SDXL (two CLIPs + pooled). With all
weights 1 the result is bit-for-bit the pipeline's own encoding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from m2i_engine.prompt import Prompt

log = logging.getLogger(__name__)


@dataclass
class EncodedPrompts:
    """Embeddings for a batch, shaped as the pipelines' ``*_embeds`` arguments want them."""

    embeds: torch.Tensor
    negative: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    negative_pooled: torch.Tensor | None = None

    def pipeline_kwargs(self) -> dict[str, torch.Tensor]:
        kw = {"prompt_embeds": self.embeds}
        if self.negative is not None:
            kw["negative_prompt_embeds"] = self.negative
        if self.pooled is not None:
            kw["pooled_prompt_embeds"] = self.pooled
            if self.negative_pooled is not None:
                kw["negative_pooled_prompt_embeds"] = self.negative_pooled
        return kw


class PromptEncoder:
    """Encodes :class:`Prompt` batches with phrase weights for one pipeline's text encoders."""

    def __init__(self, tokenizers: Sequence[Any], text_encoders: Sequence[Any], *, xl: bool) -> None:
        if len(tokenizers) != len(text_encoders) or not tokenizers:
            raise ValueError("need one tokenizer per text encoder")
        self.tokenizers = list(tokenizers)
        self.text_encoders = list(text_encoders)
        self.xl = xl

    @classmethod
    def from_pipeline(cls, pipe: Any) -> PromptEncoder:
        if getattr(pipe, "text_encoder_2", None) is not None:
            toks = [t for t in (pipe.tokenizer, pipe.tokenizer_2) if t is not None]
            encs = [e for e in (pipe.text_encoder, pipe.text_encoder_2) if e is not None]
            return cls(toks, encs, xl=True)
        return cls([pipe.tokenizer], [pipe.text_encoder], xl=False)

    @torch.inference_mode()
    def encode(
        self, prompts: Sequence[Prompt], *, weighting: float = 1.0, negative: bool = True
    ) -> EncodedPrompts:
        """Embeddings of ``prompts`` (and of their negatives when ``negative``), phrase weights scaled
        by ``weighting`` (0: plain prompt)."""
        texts = [p.text for p in prompts]
        weights = [_phrase_spans(p, weighting) for p in prompts]
        embeds, pooled = self._encode(texts, weights)
        out = EncodedPrompts(embeds=embeds, pooled=pooled)
        if negative:
            out.negative, out.negative_pooled = self._encode(
                [p.negative for p in prompts], [[] for _ in prompts]
            )
        return out

    def _encode(
        self, texts: list[str], spans: list[list[tuple[int, int, float]]]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden: list[torch.Tensor] = []
        pooled: torch.Tensor | None = None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders, strict=True):
            ids, token_w = self._tokenize(tokenizer, texts, spans)
            device = encoder.device
            mask = None
            if getattr(encoder.config, "use_attention_mask", False):
                mask = (ids != tokenizer.pad_token_id).long().to(device)
            out = encoder(ids.to(device), attention_mask=mask, output_hidden_states=self.xl)
            if self.xl:
                z = out.hidden_states[-2]
                if out[0].ndim == 2:  # CLIPTextModelWithProjection: text_embeds → the pooled vector
                    pooled = out[0]
            else:
                z = out[0]
            hidden.append(_emphasise(z, token_w.to(device=z.device, dtype=z.dtype)))
        return torch.cat(hidden, dim=-1) if len(hidden) > 1 else hidden[0], pooled

    def _tokenize(
        self, tokenizer: Any, texts: list[str], spans: list[list[tuple[int, int, float]]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids as the pipeline makes them, and each token's weight (1 outside weighted phrases)."""
        if any(spans) and not getattr(tokenizer, "is_fast", False):
            return _tokenize_by_segment(tokenizer, texts, spans)
        want_offsets = any(spans)
        enc = tokenizer(
            texts,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
            return_offsets_mapping=want_offsets,
        )
        ids = enc.input_ids
        token_w = torch.ones(ids.shape, dtype=torch.float32)
        if want_offsets:
            for b, item_spans in enumerate(spans):
                for t, (start, end) in enumerate(enc.offset_mapping[b].tolist()):
                    if end <= start:
                        continue  # BOS/EOS/padding
                    for s0, s1, w in item_spans:
                        if s0 <= start and end <= s1:
                            token_w[b, t] = w
                            break
        return ids, token_w


def _tokenize_by_segment(
    tokenizer: Any, texts: list[str], spans: list[list[tuple[int, int, float]]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """For tokenizers without offsets (transformers' slow ``CLIPTokenizer``): tokenise the text in
    pieces cut at phrase boundaries. CLIP pre-tokenises at spaces and punctuation, and the phrases are
    joined by ", ", so the pieces' tokens are the whole text's tokens."""
    max_len = tokenizer.model_max_length
    all_ids, all_w = [], []
    for text, item_spans in zip(texts, spans, strict=True):
        cuts: list[tuple[int, int, float]] = []
        at = 0
        for s0, s1, w in item_spans:
            if s0 > at:
                cuts.append((at, s0, 1.0))
            cuts.append((s0, s1, w))
            at = s1
        if at < len(text):
            cuts.append((at, len(text), 1.0))
        ids: list[int] = [tokenizer.bos_token_id]
        weights: list[float] = [1.0]
        for s0, s1, w in cuts:
            piece = tokenizer(text[s0:s1], add_special_tokens=False).input_ids
            ids += piece
            weights += [w] * len(piece)
        ids, weights = [*ids[: max_len - 1], tokenizer.eos_token_id], [*weights[: max_len - 1], 1.0]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        all_ids.append(ids + [pad] * (max_len - len(ids)))
        all_w.append(weights + [1.0] * (max_len - len(weights)))
    return torch.tensor(all_ids, dtype=torch.long), torch.tensor(all_w, dtype=torch.float32)


def _phrase_spans(prompt: Prompt, weighting: float) -> list[tuple[int, int, float]]:
    """Character spans of the prompt's weighted phrases in ``prompt.text``, in order.

    The builder may leave optional phrases out of the text; those are skipped. Weights are scaled by
    ``weighting`` around 1 (``w' = 1 + k·(w − 1)``); phrases at weight 1 are not listed.
    """
    if weighting == 0 or not prompt.phrases:
        return []
    spans = []
    cursor = 0
    for phrase, weight in prompt.phrases:
        at = prompt.text.find(phrase, cursor)
        if at < 0:
            continue
        cursor = at + len(phrase)
        w = max(0.0, 1.0 + weighting * (weight - 1.0))
        if w != 1.0:
            spans.append((at, cursor, w))
    return spans


def _emphasise(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scale each token's embedding by its weight, then restore each item's mean (A1111 emphasis)."""
    if bool((weights == 1).all()):
        return z
    before = z.float().mean(dim=(1, 2), keepdim=True)
    scaled = z.float() * weights.unsqueeze(-1).float()
    after = scaled.mean(dim=(1, 2), keepdim=True)
    ratio = torch.where(after.abs() > 1e-6, before / after, torch.ones_like(after))
    return (scaled * ratio).to(z.dtype)
