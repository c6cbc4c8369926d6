"""AdaIN stylization: the stylizer, the Stylized-ImageNet builder, decoder training, on-the-fly augmentation."""

from texturebias.stylize.adain import AdaIN, StyleStats, adain, mean_std, preserve_color

__all__ = ["AdaIN", "StyleStats", "adain", "mean_std", "preserve_color"]
