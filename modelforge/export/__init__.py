"""Deployment targets: one module per target, each writing the files its tool reads (trtexec, Triton, Jetson)."""
