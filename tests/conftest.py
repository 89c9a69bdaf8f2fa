"""Shared pytest setup: puts tests/ on sys.path so `from helpers.boring import ...` works from any test."""
