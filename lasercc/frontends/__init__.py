"""Frontends: model formats in, spiking IR out. Only ONNX exists (:mod:`lasercc.frontends.onnx`)."""
