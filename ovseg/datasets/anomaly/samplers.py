"""A batch sampler that yields every index of one category as one batch (mutual-scoring methods)."""
from collections import OrderedDict

from mmengine.dist import get_world_size
from torch.utils.data import Sampler

from ovseg.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class CategoryBatchSampler(Sampler):
    """Groups the wrapped sampler's indices by the dataset's ``category`` field: one batch per category.

    MuSc scores each image against the other test images of its category, so the whole category must
    reach the model at once. Batches follow the order in which categories first appear. Memory: the
    batch holds all images of the largest category (e.g. 3 x 518 x 518 float32 = 3.2 MB per image
    after preprocessing).

    Args:
        sampler (Sampler): the dataloader's sampler (e.g. ``DefaultSampler(shuffle=False)``); it must
            expose ``dataset``.
        batch_size (int): ignored (set by mmengine's dataloader builder).
        drop_last (bool): ignored.

    Raises:
        RuntimeError: more than one process (a category would be split over processes).
    """

    def __init__(self, sampler, batch_size=None, drop_last=False):
        if get_world_size() > 1:
            raise RuntimeError('CategoryBatchSampler needs a single process: mutual scoring must see '
                               'every image of a category.')
        dataset = getattr(sampler, 'dataset', None)
        if dataset is None:
            raise ValueError('CategoryBatchSampler needs a sampler with a `dataset` attribute')
        self.sampler = sampler
        self._category = [dataset.get_data_info(i).get('category', 'all') for i in range(len(dataset))]

    def _groups(self):
        groups = OrderedDict()
        for index in self.sampler:
            groups.setdefault(self._category[index], []).append(index)
        return groups

    def __iter__(self):
        yield from self._groups().values()

    def __len__(self):
        return len(set(self._category[i] for i in self.sampler))
