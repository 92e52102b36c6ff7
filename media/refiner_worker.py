"""The MLX title refiner's worker process: loads a local model once, answers prompts on stdin.

Run by ``media.refiner.Refiner`` as ``python refiner_worker.py MODEL_DIR`` — by path, importing
only the standard library before mlx, so the agent's own packages (and their dependencies) are
not needed here. A separate process because a model call cannot be interrupted inside the
agent: the parent kills this process when a call overruns its time bound, and the agent's memory
never holds the model.

Protocol, one JSON object per line. At start the worker prints one of
``{"ready": true}``, ``{"unavailable": "…"}`` (mlx or mlx-lm cannot be imported: the refiner
turns itself off) or ``{"error": "…"}`` (the model did not load) and then reads requests
``{"prompt": str, "system": str, "max_tokens": int}``, answering ``{"text": str}`` or
``{"error": str}``. Nothing is ever downloaded: the hub is switched offline before mlx-lm loads.
"""

from __future__ import annotations

import json
import os
import sys

PROMPT_CHARS_MAX = 4000
MAX_TOKENS_MAX = 128


_protocol = sys.stdout  # replaced in main(): libraries that print must not break the protocol


def _say(obj: dict) -> None:
    _protocol.write(json.dumps(obj) + "\n")
    _protocol.flush()


def _prompt_for(tokenizer, system: str, prompt: str) -> str:
    """A chat model gets the instruction as a system turn; a plain model the completion prompt."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt


def main(argv: list[str]) -> int:
    global _protocol
    _protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything mlx, transformers or tokenizers print goes to stderr
    sys.stdout = sys.stderr
    os.environ["HF_HUB_OFFLINE"] = "1"  # a local directory only: never a download at run time
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if len(argv) != 2 or not os.path.isdir(argv[1]):
        _say({"error": f"model directory {argv[1:]!r} does not exist"})
        return 2
    try:
        import mlx.core  # noqa: F401  (plain `mlx` on Linux installs but fails here: report it)
        from mlx_lm import generate, load
    except Exception as exc:
        _say({"unavailable": f"{type(exc).__name__}: {exc}"[:300]})
        return 3
    try:
        model, tokenizer = load(argv[1])
    except Exception as exc:
        _say({"error": f"the model in {argv[1]} did not load: {type(exc).__name__}: {exc}"[:300]})
        return 4
    _say({"ready": True})
    for line in sys.stdin:
        try:
            req = json.loads(line)
            prompt = str(req["prompt"])[:PROMPT_CHARS_MAX]
            system = str(req.get("system", ""))[:PROMPT_CHARS_MAX]
            max_tokens = max(1, min(int(req.get("max_tokens", 32)), MAX_TOKENS_MAX))
        except (ValueError, KeyError, TypeError) as exc:
            _say({"error": f"bad request: {exc}"[:200]})
            continue
        try:
            text = generate(model, tokenizer, _prompt_for(tokenizer, system, prompt), max_tokens=max_tokens)
        except Exception as exc:
            _say({"error": f"generation failed: {type(exc).__name__}: {exc}"[:300]})
            continue
        _say({"text": text})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
