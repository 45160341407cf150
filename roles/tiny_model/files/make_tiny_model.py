"""Make a Qwen3-shaped model offline: random weights (or none) + a byte-level BPE tokenizer.

Run with the vLLM venv's python (it has torch, transformers and tokenizers). Prints one JSON line
{"changed": bool, "dir": ..., "reason": ...}. Idempotent: when the target directory already holds
config.json, tokenizer.json and a marker file with the same spec, nothing is rewritten.

Any geometry works: --no-weights writes the config alone, for a full-size shape served with vLLM's
`--load-format dummy` (no weights to write or read). --pad-tokenizer fills the tokenizer's vocabulary up to
the model's with filler tokens: random weights sample ids uniformly over the model's vocabulary, and an id the
tokenizer does not know decodes to nothing, so the server streams empty chunks that clients do not count as
tokens (time to first token and inter-token latency go wrong). Fillers are plain vocabulary entries that no
merge produces: encoding never yields them, decoding each gives visible text.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

MARKER = "kvbench-tiny-model.json"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen-style chat template (ChatML): what GuideLLM and vLLM's chat endpoint render.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dir", required=True, help="target model directory")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--intermediate", type=int, default=512)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--max-position", type=int, default=16384)
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    p.add_argument("--seed", type=int, default=889)
    p.add_argument("--corpus-glob", default="/usr/share/doc/*/copyright")
    p.add_argument("--corpus-max-bytes", type=int, default=4_000_000)
    p.add_argument("--name", default="kvbench-tiny-qwen3")
    p.add_argument(
        "--tokenizer-vocab", type=int, default=0, help="BPE training vocabulary (0: the model's --vocab)"
    )
    p.add_argument(
        "--pad-tokenizer", action="store_true", help="fill the tokenizer up to --vocab with filler tokens"
    )
    p.add_argument("--no-weights", action="store_true", help="config only (serve with --load-format dummy)")
    p.add_argument("--rope-theta", type=float, default=1_000_000.0)
    p.add_argument("--rms-norm-eps", type=float, default=1e-6)
    p.add_argument("--tie-embeddings", choices=["true", "false"], default="true")
    return p.parse_args(argv)


def spec_of(args: argparse.Namespace) -> dict[str, Any]:
    keys = ["layers", "hidden", "intermediate", "heads", "kv_heads", "head_dim", "vocab", "max_position"]
    spec: dict[str, Any] = {k: getattr(args, k) for k in keys}
    spec.update(dtype=args.dtype, seed=args.seed, name=args.name, format=2)
    # Keys added later enter the spec only when set, so markers written before them still match.
    extra = {
        "tokenizer_vocab": args.tokenizer_vocab or None,
        "pad_tokenizer": args.pad_tokenizer or None,
        "weights": False if args.no_weights else None,
        "rope_theta": args.rope_theta if args.rope_theta != 1_000_000.0 else None,
        "rms_norm_eps": args.rms_norm_eps if args.rms_norm_eps != 1e-6 else None,
        "tie_embeddings": False if args.tie_embeddings == "false" else None,
    }
    spec.update({k: v for k, v in extra.items() if v is not None})
    return spec


def spec_digest(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def is_current(target: Path, digest: str) -> bool:
    marker = target / MARKER
    if not (
        (target / "config.json").is_file() and (target / "tokenizer.json").is_file() and marker.is_file()
    ):
        return False
    try:
        return json.loads(marker.read_text()).get("spec_sha256") == digest
    except (OSError, ValueError):
        return False


def corpus(pattern: str, max_bytes: int) -> list[str]:
    texts: list[str] = []
    total = 0
    for name in sorted(glob.glob(pattern)):
        try:
            text = Path(name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        texts.append(text)
        total += len(text)
        if total >= max_bytes:
            break
    if not texts:
        raise SystemExit(f"make_tiny_model: no corpus text found under {pattern!r}")
    return texts


def build_tokenizer(args: argparse.Namespace, out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=args.tokenizer_vocab or args.vocab,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(args.corpus_glob, args.corpus_max_bytes), trainer=trainer)
    if args.pad_tokenizer:
        tok = pad_vocabulary(tok, args.vocab)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=args.max_position,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    # Readable by transformers 4.x too (GuideLLM may run in its own venv): the class name 4.x knows and the
    # chat template inline (transformers 5 also writes chat_template.jinja).
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def pad_vocabulary(tok: Any, size: int) -> Any:
    """The tokenizer with its BPE vocabulary filled up to `size` ids by filler tokens no merge produces."""
    from tokenizers import Tokenizer

    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    taken = set(vocab.values()) | {t["id"] for t in data.get("added_tokens", [])}
    # Printable ASCII only: the byte-level decoder maps these characters to themselves, so each filler
    # decodes to visible text ("<f151000>") and the next one starts with its own "<".
    free = (i for i in range(size) if i not in taken)
    for token_id in free:
        vocab[f"<f{token_id}>"] = token_id
    return Tokenizer.from_str(json.dumps(data))


def build_config(args: argparse.Namespace, eos_id: int, pad_id: int) -> Any:
    from transformers import Qwen3Config

    config = Qwen3Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        head_dim=args.head_dim,
        max_position_embeddings=args.max_position,
        tie_word_embeddings=args.tie_embeddings == "true",
        rope_theta=args.rope_theta,
        rms_norm_eps=args.rms_norm_eps,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
    )
    config.architectures = ["Qwen3ForCausalLM"]
    return config


def build_model(args: argparse.Namespace, out: Path, eos_id: int, pad_id: int) -> None:
    import torch
    from transformers import Qwen3ForCausalLM

    config = build_config(args, eos_id, pad_id)
    gen = {"eos_token_id": eos_id, "pad_token_id": pad_id, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    if args.no_weights:
        # The shape alone: vLLM's --load-format dummy makes random weights on the device.
        import transformers

        # transformers 5 names the config's dtype `dtype`; 4.x `torch_dtype`.
        major = int(transformers.__version__.split(".")[0])
        setattr(config, "dtype" if major >= 5 else "torch_dtype", args.dtype)
        config.save_pretrained(out)
        return
    torch.manual_seed(args.seed)
    model = Qwen3ForCausalLM(config)
    dtype = getattr(torch, args.dtype)
    model = model.to(dtype)
    model.save_pretrained(out, safe_serialization=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    target = Path(args.dir)
    spec = spec_of(args)
    digest = spec_digest(spec)
    if is_current(target, digest):
        print(json.dumps({"changed": False, "dir": str(target), "reason": "marker matches"}))
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tiny-model-", dir=target.parent))
    try:
        build_tokenizer(args, work)
        tok = json.loads((work / "tokenizer.json").read_text())
        vocab = tok["model"]["vocab"]
        added = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
        eos_id, pad_id = added["<|im_end|>"], added["<|endoftext|>"]
        if len(vocab) > args.vocab:
            raise SystemExit(f"make_tiny_model: tokenizer has {len(vocab)} entries > vocab {args.vocab}")
        build_model(args, work, eos_id, pad_id)
        (work / MARKER).write_text(json.dumps({"spec": spec, "spec_sha256": digest}, indent=2) + "\n")
        # mkdtemp makes 0700; clients on the same host (GuideLLM's tokenizer) must read the model
        work.chmod(0o755)
        for item in work.iterdir():
            item.chmod(0o644)
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"changed": True, "dir": str(target), "reason": "built"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
