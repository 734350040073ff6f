"""TensorFlow / Keras models: format detection, loading (safe mode), and importing TensorFlow quietly.

Everything here imports TensorFlow inside functions, behind the `[tf]` extra: detecting a Keras file or a
SavedModel folder (`formats`) costs nothing, so `modelforge --help` and PyTorch/ONNX runs never load TF.
"""
