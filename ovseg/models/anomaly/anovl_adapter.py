"""AnoVL's optional per-image test-time adapter (reference ``model.TextAdapter`` + ``vl_test.loss_func``).

For one image with projected local tokens t (h, w, C) and text features T (C, 2) [normal, anomalous]:

- adapter(t) = tanh(W · t / ||t|| + b) @ E, with E (2S, C) the L2-normalised embeddings of every
  sentence (S normal then S anomalous), W (2S, C), b (2S); adapted tokens = 0.5 t + 0.5 adapter(t).
- Training batch: [t, t + N(0, ``noise_std``)] (the reference's noise level 1: std 0.05 x 1.1).
- p = softmax(normalise(adapted) @ T) over the two states; loss = ``soft_weight`` x mean entropy of
  the clean p + ``hard_weight`` x mean(-log p_anomalous(noisy) - log p_normal(clean)): the noisy copy
  is a pseudo-anomaly, the clean one a pseudo-normal image.
- ``steps`` AdamW steps (lr 1e-3, weight decay 0.01), then the clean tokens are adapted once more
  (no noise) and scored as usual.

Deviations, on purpose: W and b are drawn per image from a generator seeded with ``seed`` (the reference
re-initialises them with the global torch RNG), and the optimiser starts fresh for every image (the
reference keeps one AdamW per category whose moment estimates carry over from image to image), so an
image's map does not depend on the test order. Published AnoVL runs use 5 steps.
"""
import torch
import torch.nn.functional as F

from ovseg.registry import MODELS


@MODELS.register_module()
class AnoVLTestTimeAdapter:
    """Per-image adaptation of AnoVL's local tokens towards its text features.

    Args:
        steps (int): optimisation steps per image (reference ``--epoch``). Default 5.
        lr (float): AdamW learning rate. Default 1e-3.
        weight_decay (float): AdamW weight decay (torch default). Default 0.01.
        noise_std (float): std of the Gaussian noise of the pseudo-anomalous copy. Default 0.055.
        soft_weight (float): weight of the entropy term. Default 1.0.
        hard_weight (float): weight of the pseudo-label term. Default 0.5.
        seed (int): seed of the per-image initialisation and noise. Default 0.
    """

    def __init__(self, steps=5, lr=1e-3, weight_decay=0.01, noise_std=0.05 * 1.1, soft_weight=1.0,
                 hard_weight=0.5, seed=0):
        self.steps = int(steps)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.noise_std = float(noise_std)
        self.soft_weight = float(soft_weight)
        self.hard_weight = float(hard_weight)
        self.seed = int(seed)

    @staticmethod
    def apply(tokens, weight, bias, sentences):
        """0.5 t + 0.5 tanh(W t/|t| + b) @ E for (..., C) tokens, (2S, C) W, (2S,) b, (2S, C) E."""
        affinity = torch.tanh(F.linear(F.normalize(tokens, dim=-1), weight, bias))
        return 0.5 * tokens + 0.5 * affinity @ sentences

    def loss(self, probs):
        """(1 + n, h, w, 2) state probabilities, clean first -> scalar loss."""
        clean, noisy = probs[0], probs[1:]
        soft = -(clean * clean.log()).sum(-1).mean()
        hard = (-noisy[..., 1].log() - clean[..., 0].log()).mean()
        return self.soft_weight * soft + self.hard_weight * hard

    def __call__(self, tokens, text_features, sentences, temperature=1.0):
        """Adapt the tokens of one image.

        Args:
            tokens (Tensor): (h, w, C) projected local tokens (not normalised).
            text_features (Tensor): (C, 2) normalised [normal, anomalous] text features.
            sentences (Tensor): (2S, C) normalised sentence embeddings, normal ones first.
            temperature (float): softmax temperature of the head. Default 1.0 (none).

        Returns:
            Tensor: (h, w, C) adapted tokens (detached).
        """
        tokens, text_features, sentences = tokens.detach(), text_features.detach(), sentences.detach()
        gen = torch.Generator(device=tokens.device).manual_seed(self.seed)
        n_out, dim = sentences.shape
        bound = dim ** -0.5  # nn.Linear's default (Kaiming-uniform, a = sqrt(5)) bounds
        weight = ((torch.rand(n_out, dim, generator=gen, device=tokens.device) * 2 - 1) * bound).requires_grad_()
        bias = ((torch.rand(n_out, generator=gen, device=tokens.device) * 2 - 1) * bound).requires_grad_()
        with torch.enable_grad():
            optim = torch.optim.AdamW([weight, bias], lr=self.lr, weight_decay=self.weight_decay)
            for _ in range(self.steps):
                noise = torch.randn(tokens.shape, generator=gen, device=tokens.device) * self.noise_std
                batch = torch.stack([tokens, tokens + noise])
                adapted = F.normalize(self.apply(batch, weight, bias, sentences), dim=-1)
                probs = (adapted @ text_features / temperature).softmax(dim=-1)
                loss = self.loss(probs)
                optim.zero_grad()
                loss.backward()
                optim.step()
        with torch.no_grad():
            return self.apply(tokens, weight, bias, sentences)
