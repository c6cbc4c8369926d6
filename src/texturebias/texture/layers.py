"""The texture model's default layers (Gatys et al. 2015), kept free of torch so the CLI can show them cheaply."""

DEFAULT_LAYERS: tuple[str, ...] = ("conv1_1", "pool1", "pool2", "pool3", "pool4")
"""VGG-19 layers whose Gram matrices define a texture (Gatys et al., NeurIPS 2015; Wallis et al. 2017)."""
