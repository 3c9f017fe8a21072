"""Parameter counts and tensor names of the generator against the official model (spec Appendix A)."""
from __future__ import annotations

import re

import torch
from conftest import require_shared

from psohead.networks import GeneratorConfig, TriGridGenerator


def _appendix_a():
    """[(kind 'P'|'B', name, shape)] in the order the spec lists them (named_parameters, then buffers)."""
    text = require_shared("spec", "PANOHEAD_SPEC.md").read_text()
    section = text.split("## Appendix A", 1)[1].split("## Appendix B", 1)[0]
    rows = re.findall(r"^([PB]) (\S+) \[([0-9, ]*)\]$", section, flags=re.M)
    return [(kind, name, tuple(int(v) for v in dims.split(",") if v.strip())) for kind, name, dims in rows]


def _listing(g):
    return ([("P", n, tuple(p.shape)) for n, p in g.named_parameters()]
            + [("B", n, tuple(b.shape)) for n, b in g.named_buffers()])


def test_official_generator_names_shapes_and_count():
    with torch.device("meta"):  # no memory, no init cost
        g = TriGridGenerator.from_config(GeneratorConfig.official())
    ref = _appendix_a()
    assert len(ref) == 296  # G alone (388 = G + D)
    assert _listing(g) == ref
    assert sum(p.numel() for p in g.parameters()) == 53_741_548
    assert len(g.state_dict()) == 296


def test_fixture_small_generator_count_and_names():
    with torch.device("meta"):
        g = TriGridGenerator.from_config(GeneratorConfig.fixture_small())
    assert sum(p.numel() for p in g.parameters()) == 2_515_068
    # Same names and order as the official model; only shapes differ.
    assert [n for _, n, _ in _listing(g)] == [n for _, n, _ in _appendix_a()]
    from safetensors import safe_open
    with safe_open(str(require_shared("fixtures", "panohead_small_weights.safetensors")), "pt") as f:
        stored = {k[2:]: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith("G.")}
    assert {n: tuple(t.shape) for n, t in g.state_dict().items()} == stored
