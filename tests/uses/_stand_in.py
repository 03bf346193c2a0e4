"""A stand-in for the digit classifier: a generative model's own classifier head (AC-GAN's
auxiliary classifier, InfoGAN's Q head) read as class predictions."""

import torch


class HeadClassifier:
    """``predict(images)`` = the argmax of ``logits(images)`` with ``model`` in eval mode."""

    num_classes = 10
    device = torch.device("cpu")

    def __init__(self, model, logits):
        self.model, self.logits = model, logits

    @torch.no_grad()
    def predict(self, images):
        self.model.eval()
        return self.logits(images).argmax(1)
