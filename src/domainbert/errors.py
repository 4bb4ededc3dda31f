"""The exceptions domainbert raises for bad input.

Every user-facing problem (a malformed file, a missing checkpoint file, an impossible config, a bad
command-line argument) is one of these. Each message is one line that says what is wrong and how to
fix it; the CLI prints it as ``domainbert <command>: error: <message>`` and exits non-zero, without a
traceback. Bugs in domainbert itself stay ordinary exceptions so that they keep their traceback.
"""

from __future__ import annotations


class DomainBertError(Exception):
    """Base class: bad input from the user, with a one-line message that says what to do."""


class ConfigError(DomainBertError, ValueError):
    """A configuration that cannot work (for example hidden size not divisible by the head count)."""


class CheckpointError(DomainBertError):
    """A model directory that is missing files, is corrupted, or does not match its config."""


class VocabError(DomainBertError):
    """A vocabulary or tokenizer directory that is missing, malformed, or lacks special tokens."""


class DataError(DomainBertError):
    """An input data file that is missing or malformed (the message names the file and line)."""


class TrainingError(DomainBertError):
    """Training cannot go on (a non-finite loss, a checkpoint that does not fit the run)."""
