"""A tiny mlx-lm model built inside a test: no PyPI package ships a small text model (FIELD-NOTES).

A 2-layer Llama with a byte-level BPE tokenizer trained on the given prompts, then taught (a few
hundred Adam steps on the CPU, ~10 s) to answer each prompt with its title. Saved the way mlx-lm
saves models (config.json, model.safetensors, tokenizer files), so ``mlx_lm.load`` reads it like
any local model — the refiner's real path, end to end, with answers a test can predict.
"""

from __future__ import annotations

import json
from pathlib import Path

STEPS_MAX = 600
LOSS_DONE = 0.02


def build_tiny_model(out: Path, pairs: list[tuple[str, str]], *, seed: int = 7) -> Path:
    """Train and save a model answering ``prompt`` with `` title\\n``; returns ``out``."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm.models import llama
    from mlx_lm.utils import save_model
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    texts = [f"{prompt} {title}\n" for prompt, title in pairs]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>").save_pretrained(out)
    eos = tok.token_to_id("</s>")
    config = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
              "num_attention_heads": 4, "rms_norm_eps": 1e-5, "vocab_size": tok.get_vocab_size(),
              "tie_word_embeddings": True, "eos_token_id": eos, "max_position_embeddings": 512}
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    seqs = [[*tok.encode(t).ids, eos] for t in texts]
    width = max(map(len, seqs))
    tokens = np.zeros((len(seqs), width), dtype=np.int32)
    mask = np.zeros((len(seqs), width - 1), dtype=np.float32)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = s
        mask[i, : len(s) - 1] = 1
    x, m = mx.array(tokens), mx.array(mask)

    def loss_fn(model):
        losses = nn.losses.cross_entropy(model(x[:, :-1]), x[:, 1:], reduction="none")
        return (losses * m).sum() / m.sum()

    optimizer = optim.Adam(learning_rate=5e-3)
    step = nn.value_and_grad(model, loss_fn)
    for _ in range(STEPS_MAX):
        loss, grads = step(model)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)
        if loss.item() < LOSS_DONE:
            break
    save_model(out, model)
    (out / "config.json").write_text(json.dumps(config))
    return out
