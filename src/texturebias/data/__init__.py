"""Images, datasets, label spaces and downloadable data sets."""
