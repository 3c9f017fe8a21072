"""Process settings for a device (psohead.devices.configure)."""
import subprocess
import sys

import pytest
import torch

from psohead.devices import configure

# A renderer-like loop in a fresh process: tensors of tens of MiB made, used and freed, as the
# CPU renderer's per-sample temporaries are every step. Prints the page faults it took.
_LOOP = """
import resource, sys, torch
from psohead.devices import configure
if sys.argv[1] == "configured":
    assert configure(torch.device("cpu"))
for i in range(41):
    if i == 1:  # after the first round, which grows the heap either way
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = torch.empty(294912, 64).fill_(1.0)
    b = a * 2
    del a, b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _LOOP, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings")
def test_cpu_setting_reuses_freed_memory_instead_of_fresh_pages():
    assert not configure(torch.device("meta"))  # nothing to set for other devices
    # glibc's default maps each such block anew and unmaps it on free: a page fault per 4 KiB
    default, configured = _faults("default"), _faults("configured")
    assert default > 40 * 2 * (294912 * 64 * 4 // 4096) * 0.9
    assert configured < default / 3
