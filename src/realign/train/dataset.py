"""The term dataset: a method's terms tokenised (:class:`TermDataset`, with room for their
reference log-probs) and batched (:class:`TermCollator`: every sequence of a micro-batch's terms in
one padded batch, so that the micro-batch costs one policy forward pass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..objective.losses import KIND_INDEX
from ..objective import Term
from ..modeling.sequences import Encoded, collate, encode


@dataclass(frozen=True)
class EncodedTerm:
    kind: int
    weight: float
    component: str
    first: Encoded
    second: Encoded | None


class TermDataset(torch.utils.data.Dataset):
    """Tokenised terms, with reference log-probs once computed."""

    def __init__(self, terms: Sequence[Term], tokenizer, max_length: int) -> None:
        self.items = [
            EncodedTerm(
                KIND_INDEX[t.kind],
                float(t.weight),
                t.component,
                encode(tokenizer, t.prompt, t.first, max_length),
                encode(tokenizer, t.prompt, t.second, max_length) if t.second is not None else None,
            )
            for t in terms
        ]
        self.truncated = sum(it.first.truncated + bool(it.second and it.second.truncated) for it in self.items)
        self.ref = torch.full((len(self.items), 2), float("nan"))
        self.components = sorted({t.component for t in terms})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return {"index": index}


class TermCollator:
    """Builds one batch of all sequences of a micro-batch's terms (dynamic padding), with
    the rows where each term's first and second response sit."""

    def __init__(self, dataset: TermDataset, pad_id: int, components: list[str]) -> None:
        self.dataset, self.pad_id, self.components = dataset, pad_id, components

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        index = [f["index"] for f in features]
        items = [self.dataset.items[i] for i in index]
        seqs: list[Encoded] = [it.first for it in items]
        second_row = []
        for it in items:
            if it.second is None:
                second_row.append(-1)
            else:
                second_row.append(len(seqs))
                seqs.append(it.second)
        batch = collate(seqs, self.pad_id)
        batch.update(
            kind=torch.tensor([it.kind for it in items]),
            weight=torch.tensor([it.weight for it in items], dtype=torch.float32),
            component=torch.tensor([self.components.index(it.component) for it in items]),
            second_row=torch.tensor(second_row),
            ref=self.dataset.ref[index],
        )
        return batch
