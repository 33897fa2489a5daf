"""Interop: Hugging Face import (``hf_import``) and export (``hf_export``, ``trevo.hf``), the
lm-evaluation-harness adapter (``lm_eval_adapter``), evaluation (``evaluate``) and the catalogue site
(``site``). ``transformers``, ``tokenizers`` and ``lm_eval`` are optional extras, imported only where used."""
