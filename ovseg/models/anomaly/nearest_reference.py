"""Nearest normal-reference search of few-shot anomaly methods, in bounded memory.

WinCLIP+ (anomalib ``visual_association_score``) and AdaptCLIP (``PQAdapter``) score a query embedding by
its cosine distance to the closest embedding of a memory bank built from k normal reference images,
wherever that embedding lies (position is ignored). Both compute ``1 - cos`` of L2-normalised vectors and
take the minimum over the bank (WinCLIP halves it). Here the bank is processed in chunks of columns so
that the similarity block (and the normalised bank chunk) never exceeds ``chunk_elements`` floats,
whatever k: peak extra memory is at most about ``3 * 4 * chunk_elements`` bytes (the similarity block,
``1 - cos`` and the normalised bank chunk) plus the normalised queries (:func:`search_bytes`). Ties keep
the earliest bank index, as ``torch.min`` over the whole bank does.
"""
import torch
import torch.nn.functional as F


def nearest_reference(queries, bank, chunk_elements=1 << 24, normalized=False):
    """Smallest cosine distance ``1 - cos`` of every query vector to a bank, and its bank index.

    Args:
        queries (Tensor): (B, N, C) query embeddings (any scale; normalised here).
        bank (Tensor): (M, C) reference embeddings (any scale; normalised chunk by chunk).
        chunk_elements (int): most similarities held at once (B * N * bank chunk). Default 2**24.
        normalized (bool): the inputs are L2-normalised already (not normalised again). Default False.

    Returns:
        tuple[Tensor, Tensor]: (B, N) distances in the queries' dtype and (B, N) int64 indices into the
        bank (the first index among equal distances).

    Raises:
        ValueError: an empty bank or mismatched widths.
    """
    if bank.dim() != 2 or bank.shape[0] == 0:
        raise ValueError(f'the reference bank must be a non-empty (M, C) tensor, got {tuple(bank.shape)}')
    if queries.shape[-1] != bank.shape[-1]:
        raise ValueError(f'query width {queries.shape[-1]} != reference width {bank.shape[-1]}')
    b, n, _ = queries.shape
    q = queries if normalized else F.normalize(queries, dim=-1)
    step = max(1, int(chunk_elements) // max(b * n, queries.shape[-1]))  # bounds sims and bank chunk
    best = index = None
    for start in range(0, bank.shape[0], step):
        dist, arg = _chunk_nearest(q, bank[start:start + step], normalized)  # the chunk's temporaries die here
        if best is None:
            best, index = dist, arg
        else:
            better = dist < best  # strict: an equal distance keeps the earlier index
            best = torch.where(better, dist, best)
            index = torch.where(better, arg + start, index)
    return best, index


def _chunk_nearest(q, chunk, normalized):
    ref = chunk.to(q.dtype)
    ref = ref if normalized else F.normalize(ref, dim=-1)
    return torch.min(1.0 - q @ ref.t(), dim=-1)


def bank_bytes(num_references, positions_and_widths, bytes_per_value=4):
    """Bytes of a memory bank of ``num_references`` images: sum over (positions, width) of each part."""
    return bytes_per_value * num_references * sum(p * c for p, c in positions_and_widths)


def search_bytes(num_queries, width, bank_rows, chunk_elements=1 << 24, normalized=False, bytes_per_value=4):
    """Peak extra bytes of one :func:`nearest_reference` call of ``num_queries`` query rows against
    ``bank_rows`` bank rows: the normalised bank chunk while its normalisation holds a temporary of the
    same size, or the chunk with the similarity block and ``1 - cos`` (queries x chunk each); plus the
    normalised queries and the outputs. With ``normalized`` inputs the chunk is a view (no copy)."""
    step = min(bank_rows, max(1, int(chunk_elements) // max(num_queries, width)))
    chunk = 0 if normalized else step * width
    peak = max(2 * chunk, chunk + 2 * num_queries * step)
    return bytes_per_value * (peak + (0 if normalized else num_queries * width)) + 16 * num_queries
