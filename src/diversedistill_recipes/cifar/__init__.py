"""CIFAR-10/100: the data, the ViT student, the ViT and CLIP-style teachers, and the
``reproduce cifar10`` experiment."""
