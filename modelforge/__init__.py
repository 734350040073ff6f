"""modelforge: turn a trained model into a serving-ready artifact, with its accuracy kept and proven.

Importing this package stays cheap: frameworks (onnx, onnxruntime, torch, tensorflow) are imported
inside the functions that use them.
"""

__version__ = "0.1.0"
