"""Hugging Face model folders: recognising and validating a local folder (`folder`), its task (`task`),
loading it with transformers from the folder alone (`load`), and the sentence-transformers pooling wrapper
(`pooling`).

Importing this package does not import transformers or torch; each function does, so the CLI stays light.
"""
