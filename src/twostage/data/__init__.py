"""Dataset sources and the data-preparation stage."""
