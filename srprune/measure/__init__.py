"""Measurement: params and MACs, ONNX export, ONNX Runtime sessions, latency, roofline."""
