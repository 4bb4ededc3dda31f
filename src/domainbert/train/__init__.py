"""Pretraining: prepared examples in, resumable checkpoints and an exported model out.

Takes the shards of :mod:`domainbert.data.shards` and a recipe (``recipes/*.yaml``, found by name)
and gives out a run directory (checkpoints, metrics) and its export, a Hugging Face directory.

``pretrain`` (the loop and ``domainbert pretrain``) · ``args`` (``PretrainArgs``, what a resume may
change, the recipes) · ``state`` (checkpoints and RNG states) ·
``export`` (``domainbert export``) · ``optim`` (AdamW groups, LAMB, the learning-rate schedule) ·
``precision`` (bf16 autocast where native; fine-tuning and serving use it too) · ``distributed``
(torchrun: process groups, devices).
"""
