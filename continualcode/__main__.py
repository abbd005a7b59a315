"""`python -m continualcode`: see continualcode.cli."""

import os

# Set before torch is imported: generation and the trainer thread share two cores,
# and busy-waiting OpenMP threads made a training step 10x slower (DEVELOPERS.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from continualcode.cli import entry

entry()  # drops secret-looking variables from this process's own environment, then runs main()
