"""Hungarian matching: the cheapest one-to-one assignment of queries to targets."""

from __future__ import annotations

import itertools

import torch

from posekit.detector.matcher import MatchCosts, hungarian_match, match_cost


def test_each_target_gets_the_query_that_fits_it() -> None:
    targets = torch.tensor([[0.2, 0.2, 0.1, 0.2], [0.7, 0.6, 0.3, 0.4]])
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4], [0.21, 0.2, 0.1, 0.2]])
    logits = torch.tensor([[-3.0], [3.0], [3.0]])  # one class: person
    queries, matched = hungarian_match(logits, boxes, torch.tensor([0, 0]), targets)
    assert dict(zip(matched.tolist(), queries.tolist(), strict=True)) == {0: 2, 1: 1}


def test_the_assignment_has_the_minimum_total_cost() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 2, generator=generator)
    boxes = torch.rand(5, 4, generator=generator) * 0.5 + 0.25
    labels, targets = torch.tensor([1, 0, 1]), torch.rand(3, 4, generator=generator) * 0.5 + 0.25
    queries, matched = hungarian_match(logits, boxes, labels, targets)
    cost = match_cost(logits, boxes, labels, targets, MatchCosts())
    best = min(
        sum(cost[q, t].item() for t, q in enumerate(choice))
        for choice in itertools.permutations(range(5), 3)
    )
    assert sorted(matched.tolist()) == [0, 1, 2] and len(set(queries.tolist())) == 3
    assert abs(sum(cost[q, t].item() for q, t in zip(queries, matched, strict=True)) - best) < 1e-5


def test_no_targets_match_nothing() -> None:
    queries, matched = hungarian_match(torch.zeros(4, 1), torch.rand(4, 4), torch.zeros(0,
                                       dtype=torch.int64), torch.zeros(0, 4))  # fmt: skip
    assert queries.size == 0 and matched.size == 0
