"""CT-scan classification service: ONNX models served over HTTP with onnxruntime."""

__version__ = "0.1.0"
