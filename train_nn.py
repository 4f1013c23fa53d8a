#!/usr/bin/env python
"""Train the real network (an NTK-parameterised MLP) with mini-batch SGD + momentum over a grid.

The learning rate is in normalised-kernel units: the network is trained with lr_nn = lr * N / lambda_max(K_emp).

Example:
    python train_nn.py --dataset digits --N 256 --width 1000 --lr 0.5 1.0 --momentum 0 -0.3 --batch_size 8 32 --n_steps 1000
    python train_nn.py --dataset mnist --data_root ../shared/data --N 1000 --lr 1.0 --batch_size 10 100 --n_test 1000
"""
from gfsgd.network_cli import network_main

if __name__ == "__main__":
    network_main(["nn"], script="train_nn",
                 description="Train the real network with mini-batch SGD + momentum (loss 0.5 * MSE).")
