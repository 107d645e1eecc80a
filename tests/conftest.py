import torch

# Tests run on CPU; two threads is what CI machines have and keeps timing noise between workers low.
torch.set_num_threads(2)
