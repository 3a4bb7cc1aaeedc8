"""AnomalyCLIP's object-agnostic learnable prompts (reference ``AnomalyCLIP_PromptLearner``).

Two prompts, [normal, anomalous]: the start token, ``n_ctx`` learnable word embeddings, then the
token embeddings of ``"object."`` / ``"damaged object."`` and the padding. The token ids come from the
tokenised strings ``"X X ... X object."`` (one ``X`` per learnable token, replaced by the learnable
vectors), so the end-of-text position is where the CLIP tokenizer puts it. Besides, ``text_depth - 1``
sets of ``text_n_ctx`` learnable vectors replace text tokens 1..``text_n_ctx`` before text blocks
1..``text_depth - 1`` (:func:`encode_learned_prompts`).

The fixed token embeddings are looked up from the frozen CLIP at every call (the reference stores
them as buffers computed once from the same weights), so the learner's state dict holds only what is
trained: ``ctx_pos`` (1, 1, n_ctx, D), ``ctx_neg`` (1, 1, n_ctx, D) and ``compound_prompts_text.{i}``
(text_n_ctx, D). The reference's ``compound_prompt_projections`` are never used in its forward pass and
are not created here (``tools/model_converters/anomalyclip_to_ovseg.py`` drops them).
"""
import torch
import torch.nn as nn

OBJECT_STATES = ('{}', 'damaged {}')


class AnomalyCLIPPromptLearner(nn.Module):
    """Learnable [normal, anomalous] prompt embeddings and deep text prompts.

    Args:
        text_width (int): width D of the CLIP text tower (768 for ViT-L/14).
        n_ctx (int): learnable tokens per prompt. Default 12.
        text_depth (int): text blocks up to which learnable tokens are inserted (the reference's
            ``learnabel_text_embedding_depth``); ``text_depth - 1`` deep sets. Default 9.
        text_n_ctx (int): tokens per deep set. Default 4.
        class_word (str): the class-agnostic word. Default 'object'.
        states (Sequence[str]): (normal, anomalous) state templates. Default ('{}', 'damaged {}').
        init_std (float): std of the normal initialisation. Default 0.02.
    """

    def __init__(self, text_width, n_ctx=12, text_depth=9, text_n_ctx=4, class_word='object',
                 states=OBJECT_STATES, init_std=0.02):
        super().__init__()
        if len(states) != 2:
            raise ValueError(f'states must be (normal, anomalous), got {states!r}')
        if text_n_ctx > n_ctx:
            raise ValueError(f'text_n_ctx ({text_n_ctx}) cannot exceed n_ctx ({n_ctx}): the deep tokens '
                             f'replace learnable prompt positions 1..text_n_ctx')
        self.n_ctx, self.text_n_ctx = int(n_ctx), int(text_n_ctx)
        self.texts = tuple(' '.join(['X'] * self.n_ctx) + ' ' + s.format(class_word) + '.' for s in states)
        self.ctx_pos = nn.Parameter(torch.empty(1, 1, self.n_ctx, text_width).normal_(std=init_std))
        self.ctx_neg = nn.Parameter(torch.empty(1, 1, self.n_ctx, text_width).normal_(std=init_std))
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.empty(self.text_n_ctx, text_width).normal_(std=init_std))
             for _ in range(int(text_depth) - 1)])
        self._tokens = None

    def tokenized_prompts(self, tokenizer, device=None):
        """(2, L) int64 token ids of the normal and anomalous prompt strings (cached)."""
        if self._tokens is None:
            self._tokens = tokenizer(list(self.texts)).long()
        return self._tokens.to(device) if device is not None else self._tokens

    def forward(self, token_embedding, tokens):
        """Prompt embeddings.

        Args:
            token_embedding (nn.Embedding): the CLIP text tower's token embedding (frozen).
            tokens (Tensor): (2, L) ids from :meth:`tokenized_prompts`.

        Returns:
            Tensor: (2, L, D) [start token, learnable context, rest of the sentence] per prompt.
        """
        with torch.no_grad():
            fixed = token_embedding(tokens)
        ctx = torch.cat([self.ctx_pos.reshape(1, self.n_ctx, -1), self.ctx_neg.reshape(1, self.n_ctx, -1)])
        return torch.cat([fixed[:, :1], ctx.to(fixed.dtype), fixed[:, 1 + self.n_ctx:]], dim=1)
