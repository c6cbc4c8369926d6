"""Shared helpers: progress and logging, seeding, atomic file writes, distributed setup."""
