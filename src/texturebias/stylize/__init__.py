"""AdaIN stylization: the stylizer, the Stylized-ImageNet builder, decoder training, on-the-fly augmentation.

Official networks (REFERENCE §2; weights declared in :mod:`texturebias.models.adain_nets`)::

    from texturebias.stylize import AdaIN
    model = AdaIN.from_checkpoints(vgg="vgg_normalised.pth", decoder="decoder.pth")  # None: declared download
    out = model(content, style, alpha=1.0, style_weights=None, preserve_color=False)  # raw, unclamped
    stats = model.style_stats(styles)            # StyleStats: per-style mean/std, compute once and reuse
    out = model(content, stats, alpha=torch.tensor([...]))   # per-sample styles and α

Custom encoder and decoder (any VGG-style ``nn.Sequential``; e.g. a tiny AdaIN for 32×32 images with a
frozen random encoder at a relu2_1-like layer)::

    from texturebias.stylize.networks import small_vgg_encoder, mirrored_decoder
    from texturebias.stylize.train import train_decoder

    encoder, style_layers = small_vgg_encoder((16, 32), seed=0)  # style_layers == (2, 6): relu1_1/relu2_1-like
    model = AdaIN(encoder, mirrored_decoder((16, 32)), style_layers=style_layers)
    train_decoder(content_dir, style_dir, out_dir, model=model, iterations=2000, batch_size=32,
                  image_size=40, crop_size=32, workers=0)            # trains model.decoder in place
    out = model(content32, style32)                                  # N×3×32×32

``AdaIN(encoder, decoder, style_layers=..., precision="fp32"|"bf16"|"fp16", channels_last=False)``:
``style_layers`` are encoder indices whose outputs enter the style loss; the largest is the AdaIN layer
and the encoder is truncated after it; the encoder is frozen. ``encode``, ``encode_with_intermediate``,
``decode``, ``style_stats`` and ``stylize_features`` expose the pieces.

Elsewhere in the package: :func:`texturebias.stylize.builder.stylize_folder` (the SIN builder, CLI
``texturebias stylize``), :func:`texturebias.stylize.train.train_decoder` (CLI ``texturebias train-decoder``),
:class:`texturebias.stylize.augment.StyleAugment` and :func:`~texturebias.stylize.augment.style_bank`
(batched stylization during training). Guide: ``docs/stylize.md``.
"""

from texturebias.stylize.adain import AdaIN, StyleStats, adain, mean_std, preserve_color

__all__ = ["AdaIN", "StyleStats", "adain", "mean_std", "preserve_color"]
