"""Task models: thin compositions of rnnkit layers, heads and losses."""

from rnnkit.models.language_model import CharLM, LanguageModel, WordLM, build_language_model

__all__ = ["LanguageModel", "CharLM", "WordLM", "build_language_model"]
