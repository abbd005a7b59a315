"""`python -m continualcode`: see continualcode.cli."""

import os
import sys

# Set before torch is imported: generation and the trainer thread share two cores,
# and busy-waiting OpenMP threads made a training step 10x slower (DEVELOPERS.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from continualcode.cli import main

sys.exit(main())
