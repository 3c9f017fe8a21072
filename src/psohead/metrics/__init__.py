"""Fidelity metrics: image similarity, identity similarity, geometry error."""
