"""Text models in plain torch over a character vocabulary (printable ASCII):
a CNN language identifier, a small transformer encoder-decoder translator
and a BERT-mini style encoder for sentiment."""

from __future__ import annotations

import math

import torch
from torch import nn

PAD, BOS, EOS = 0, 1, 2
FIRST_CHAR = 3
CHARS = [chr(c) for c in range(32, 127)]
VOCAB = FIRST_CHAR + len(CHARS)
LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pt", "sv"]
SENTIMENTS = ["negative", "neutral", "positive"]


def encode(text: str, max_len: int) -> list[int]:
    """Characters outside printable ASCII become '?'."""
    return [FIRST_CHAR + (ord(c) - 32 if 32 <= ord(c) < 127 else ord("?") - 32) for c in text[:max_len]]


def decode(ids: list[int]) -> str:
    return "".join(CHARS[i - FIRST_CHAR] for i in ids if i >= FIRST_CHAR)


def pad(batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, padding mask: True where padded)."""
    width = max(1, max(len(ids) for ids in batch))
    ids = torch.full((len(batch), width), PAD, dtype=torch.long)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return ids, ids == PAD


class PositionalEncoding(nn.Module):
    def __init__(self, dim, max_len=512):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div)
        self.register_buffer("table", table)

    def forward(self, x):
        return x + self.table[: x.shape[1]]


class LangIdCNN(nn.Module):
    """Character embeddings, convolutions of widths 3/4/5, max over time."""

    def __init__(self, dim=64, filters=96):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim, padding_idx=PAD)
        self.convs = nn.ModuleList([nn.Conv1d(dim, filters, k, padding=k // 2) for k in (3, 4, 5)])
        self.out = nn.Linear(3 * filters, len(LANGUAGES))

    def forward(self, ids, padded):
        x = self.embed(ids).transpose(1, 2)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x))[..., : ids.shape[1]]
            pooled.append(h.masked_fill(padded.unsqueeze(1), float("-inf")).amax(-1))
        return self.out(torch.cat(pooled, 1)).softmax(-1)


class Translator(nn.Module):
    """A transformer encoder-decoder (Vaswani et al. 2017), greedy decoding."""

    def __init__(self, dim=128, heads=4, layers=2, ff=256):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim, padding_idx=PAD)
        self.position = PositionalEncoding(dim)
        self.core = nn.Transformer(dim, heads, layers, layers, ff, dropout=0.0, batch_first=True)
        self.core.encoder.enable_nested_tensor = False  # identical results with and without padding
        self.out = nn.Linear(dim, VOCAB)

    @torch.inference_mode()
    def translate(self, ids, padded, max_new: int) -> list[list[int]]:
        memory = self.core.encoder(self.position(self.embed(ids)), src_key_padding_mask=padded)
        n = ids.shape[0]
        out = torch.full((n, 1), BOS, dtype=torch.long, device=ids.device)
        done = torch.zeros(n, dtype=torch.bool, device=ids.device)
        for _ in range(max_new):
            causal = self.core.generate_square_subsequent_mask(out.shape[1], device=ids.device)
            h = self.core.decoder(self.position(self.embed(out)), memory, tgt_mask=causal, tgt_is_causal=True,
                                  memory_key_padding_mask=padded)
            logits = self.out(h[:, -1])
            logits[:, PAD] = float("-inf")
            logits[:, BOS] = float("-inf")
            step = logits.argmax(-1).masked_fill(done, PAD)
            out = torch.cat([out, step.unsqueeze(1)], 1)
            done |= step == EOS
            if bool(done.all()):
                break
        results = []
        for row in out[:, 1:].tolist():
            seq = []
            for token in row:
                if token in (EOS, PAD):
                    break
                seq.append(token)
            results.append(seq)
        return results


class BertMini(nn.Module):
    """A BERT-mini style encoder (4 layers, 256 wide, 4 heads) with a [CLS]
    position and a 3-way sentiment head."""

    def __init__(self, dim=256, heads=4, layers=4, ff=1024, max_len=256):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim, padding_idx=PAD)
        self.position = nn.Embedding(max_len + 1, dim)
        self.norm = nn.LayerNorm(dim)
        layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.0, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, len(SENTIMENTS))

    def forward(self, ids, padded):
        cls = torch.full((ids.shape[0], 1), BOS, dtype=torch.long, device=ids.device)
        ids = torch.cat([cls, ids], 1)
        padded = torch.cat([torch.zeros_like(padded[:, :1]), padded], 1)
        x = self.norm(self.embed(ids) + self.position(torch.arange(ids.shape[1], device=ids.device)))
        h = self.encoder(x, src_key_padding_mask=padded)
        return self.head(h[:, 0]).softmax(-1)
