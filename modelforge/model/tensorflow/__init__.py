"""TensorFlow / Keras models: detection, loading, ONNX conversion (tf2onnx), TFLite, TF-MOT pruning.

Everything here imports TensorFlow inside functions, behind the `[tf]` extra: detecting a Keras file or a
SavedModel folder (`formats`) costs nothing, so `modelforge --help` and PyTorch/ONNX runs never load TF.
"""
