"""``import trevo.hf`` registers trevo's config and models with ``transformers``' Auto classes
(``AutoConfig``, ``AutoModelForCausalLM``, ``AutoModelForMaskedLM``, ``AutoModelForSequenceClassification``),
so that a directory written by ``trevo export`` loads with ``from_pretrained``. Needs ``trevo[hf]``."""

from trevo.interop.hf_export import (  # noqa: F401  (importing registers them)
    TrevoConfig,
    TrevoForCausalLM,
    TrevoForMaskedLM,
    TrevoForSequenceClassification,
    TrevoState,
    export_hf,
    to_hf,
)
