"""Deployment: an FP32 ONNX export made INT8 with ONNX Runtime's tools, judged on images."""
