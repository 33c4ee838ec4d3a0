"""Build alexnet_viz/assets/fashion_mnist_sample.npz (the offline fallback) from a local Fashion-MNIST copy.

Usage: python tools/make_sample.py ../shared/data
Takes the first 1,000 training and 200 test images of each class, uint8, compressed.
"""
import sys

import numpy as np
from torchvision.datasets import FashionMNIST


def pick(ds, per_class: int):
    y = ds.targets.numpy()
    idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
    idx.sort()
    return ds.data.numpy()[idx], y[idx].astype(np.uint8)


if __name__ == "__main__":
    root = sys.argv[1]
    xtr, ytr = pick(FashionMNIST(root, train=True, download=False), 1000)
    xte, yte = pick(FashionMNIST(root, train=False, download=False), 200)
    np.savez_compressed("alexnet_viz/assets/fashion_mnist_sample.npz", train_x=xtr, train_y=ytr, test_x=xte, test_y=yte)
    print(xtr.shape, xte.shape)
