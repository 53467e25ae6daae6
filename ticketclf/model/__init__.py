"""The local model: training, safe save/load with a model card, prediction and explanations."""

from .core import TicketModel
from .store import load_model

__all__ = ["TicketModel", "load_model"]
