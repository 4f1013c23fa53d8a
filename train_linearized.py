#!/usr/bin/env python
"""Linearized model trained with sampled mini-batches (mean of --repeats paths).

Example:
    python train_linearized.py --N 200 --nu 1.5 --kappa 1 --lr 0.5 1.0 --momentum 0 -0.3 --batch_size 1 10 --n_steps 1000
"""
from gfsgd.cli import main

if __name__ == "__main__":
    main(["linearized"], script="train_linearized", description="Linearized model trained with sampled mini-batches (mean of --repeats paths).")
