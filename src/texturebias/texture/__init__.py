"""Texture synthesis (Gatys et al. 2015) and image scrambling: what is left of an image when global shape is gone."""
