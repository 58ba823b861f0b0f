"""Learnable prompts: the position-guided text context and the image patch prompt."""

from ppad.prompts.image import PROMPT_INIT_STD, ImagePrompt
from ppad.prompts.text import PositionTextPrompt, prompt_token_ids

__all__ = ["PROMPT_INIT_STD", "ImagePrompt", "PositionTextPrompt", "prompt_token_ids"]
