"""Exceptions raised by internvl-agent.

Every error names the problem and, where there is one, the fix.
"""

from __future__ import annotations


class InternVLAgentError(Exception):
    """Base class of every error this package raises on purpose."""


class CheckpointError(InternVLAgentError):
    """A checkpoint cannot be found, read or loaded."""


class UnsupportedCheckpointError(CheckpointError):
    """The checkpoint exists but is in a format this package does not load."""


class ImageInputError(InternVLAgentError, ValueError):
    """An image in the input cannot be decoded, fetched or accepted."""


class VideoInputError(InternVLAgentError, ValueError):
    """A video in the input cannot be decoded, fetched or accepted."""


class MessageFormatError(InternVLAgentError, ValueError):
    """A message or content block has a form this model cannot take."""


class ContextLengthError(InternVLAgentError, ValueError):
    """The prompt does not fit in the model's context window."""


class ConfigurationError(InternVLAgentError, ValueError):
    """An option has a value that cannot work (wrong device, missing extra...)."""
