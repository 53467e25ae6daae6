"""ticketclf: batch classifier for telecom customer-support tickets."""

__version__ = "0.1.0"
