"""roles/tiny_model for a full-size shape without weights (served with --load-format dummy): Qwen3-8B's
geometry in config.json, no weight file, and a tokenizer padded to the model's vocabulary so that every id
random weights can sample decodes to text (an id that decodes to nothing makes the server stream empty chunks
that GuideLLM does not count, which corrupts TTFT and ITL)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.roles.conftest import _role_playbook

pytestmark = [pytest.mark.roles, pytest.mark.e2e]

VOCAB = 151936
QWEN3_8B = {"num_hidden_layers": 36, "num_key_value_heads": 8, "head_dim": 128, "hidden_size": 4096}


def test_a_qwen3_8b_shape_with_a_padded_tokenizer(vllm_venv: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    extra = {
        "tiny_model_dir": str(model),
        "tiny_model_python": str(vllm_venv / "bin" / "python"),
        "tiny_model_script_dir": str(tmp_path / "libexec"),
        "tiny_model_weights": False,
        "tiny_model_layers": 36,
        "tiny_model_hidden": 4096,
        "tiny_model_intermediate": 12288,
        "tiny_model_heads": 32,
        "tiny_model_kv_heads": 8,
        "tiny_model_head_dim": 128,
        "tiny_model_vocab": VOCAB,
        "tiny_model_tokenizer_vocab": 512,
        "tiny_model_pad_tokenizer": True,
        "tiny_model_tie_embeddings": False,
        "tiny_model_corpus_max_bytes": 200000,
    }
    _role_playbook("vllm_tiny_model.yml", extra, tmp_path)

    config = json.loads((model / "config.json").read_text())
    assert {k: config[k] for k in QWEN3_8B} == QWEN3_8B
    assert config["vocab_size"] == VOCAB and config["tie_word_embeddings"] is False
    assert not list(model.glob("*.safetensors"))

    # Every id of the model's vocabulary decodes to text; the trained part still encodes text as before.
    check = (
        "import json, sys\n"
        "from transformers import AutoTokenizer\n"
        "t = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "empty = [i for i in range(0, len(t), 97) if t.decode([i], skip_special_tokens=True) == '']\n"
        "ids = t('hello world')['input_ids']\n"
        "print(json.dumps({'size': len(t), 'empty': empty, 'max_id': max(ids)}))\n"
    )
    out = subprocess.run(
        [str(vllm_venv / "bin" / "python"), "-c", check, str(model)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert found["size"] == VOCAB
    # id 0 is the pad token (special, skipped): no other sampled id may decode to nothing
    assert found["empty"] in ([], [0]), found["empty"][:20]
    assert found["max_id"] < 512
