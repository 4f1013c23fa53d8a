#!/usr/bin/env python
"""Spectral-diagonal (SD) approximation of the second-moment dynamics, one run per --tau.

Example:
    python train_spectral_diagonal.py --N 200 --nu 1.5 --kappa 1 --lr 0.5 1.0 --momentum 0 -0.3 --batch_size 1 10 --n_steps 1000
"""
from gfsgd.cli import main

if __name__ == "__main__":
    main(["sd"], script="train_spectral_diagonal", description="Spectral-diagonal (SD) approximation of the second-moment dynamics, one run per --tau.")
