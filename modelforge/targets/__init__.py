"""Serving targets a pass can aim a model at (runtime x precision), and `--target auto`, which measures them."""
