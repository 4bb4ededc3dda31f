"""The model: BERT's configuration, the encoder and its heads, and Hugging Face directories.

Takes a config (a preset or a ``config.json``) or a checkpoint directory (domainbert's, or any
Hugging Face BERT: bert-base, BioBERT, PubMedBERT) and gives out PyTorch modules with Hugging Face's
parameter names, saved back as directories transformers loads.

``configuration`` (``BertConfig``, presets) · ``modeling`` (the encoder and heads, one file) ·
``hf_io`` (reading and writing checkpoint directories) · ``hub`` (a ``--model`` value: a directory or a
Hugging Face Hub repo id, fetched into the Hub cache) · ``card`` (the model cards ``export``, ``finetune``
and ``blurb --update-card`` write) · ``commands`` (``model create``, ``model info``).
"""
