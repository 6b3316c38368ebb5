"""Test-wide settings."""
import torch

# The models under test are tiny: one intra-op thread is faster than two, and it keeps
# the suite's timing steady on a loaded 2-core machine (spinning worker threads of a
# second pool slow everything down when the cores are busy). Tests that are about
# threads set their own count.
torch.set_num_threads(1)
