"""Streaming readers and atomic writers."""
