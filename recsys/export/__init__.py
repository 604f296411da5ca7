"""Trained model -> ONNX serving bundle: ``tables`` (fold-in tables, torch), ``scorer`` (ONNX
graph), ``bundle`` (write/read, torch-free), ``gate`` (export gate and ``recsys export``)."""
