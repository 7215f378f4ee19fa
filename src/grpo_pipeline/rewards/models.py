"""Reward models: sequence-classification models whose single logit scores a prompt and its completion.

Training and validation hand them to ``GRPOTrainer`` as ``reward_funcs`` entries with their tokenizers as
``reward_processing_classes``, and TRL scores with them.
"""

from __future__ import annotations

from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from grpo_pipeline.config.schema import RewardModelParams


def load_reward_model(params: RewardModelParams) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (safetensors only, one label, in eval mode) and its tokenizer, padding as TRL sets it up."""
    path = params.name_or_path.rstrip("/")
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=1,
        revision=params.revision,
        trust_remote_code=params.trust_remote_code,
        use_safetensors=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        params.tokenizer or path,
        revision=None if params.tokenizer else params.revision,
        trust_remote_code=params.trust_remote_code,
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # The score is read at the last non-padding token, which the model finds through its pad token id.
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer
