"""Shared, dependency-free pieces of tva-agent: errors and limits used by every package."""
