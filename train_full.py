#!/usr/bin/env python
"""Exact batch-averaged second-moment dynamics of mini-batch SGD with momentum.

Example:
    python train_full.py --N 200 --nu 1.5 --kappa 1 --lr 0.5 1.0 --momentum 0 -0.3 --batch_size 1 10 --n_steps 1000
"""
from gfsgd.cli import main

if __name__ == "__main__":
    main(["full"], script="train_full", description="Exact batch-averaged second-moment dynamics of mini-batch SGD with momentum.")
