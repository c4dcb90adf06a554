"""Matching a folder's classes to a model's by name: order, a subset, convert's folder names, unknowns."""

from __future__ import annotations

import pytest
import torch

from resdense.data.convert import class_folder_name
from resdense.errors import UserError
from resdense.serve.classmatch import match_by_name

MODEL = ["T-shirt/top", "Trouser", "Bag"]


def test_a_folder_made_by_convert_matches_its_model_under_the_folder_names():
    folders = sorted(class_folder_name(c) for c in MODEL)  # as the folder sorts: Bag, T-shirt-top, Trouser
    assert "T-shirt-top" in folders
    labels = torch.tensor([0, 1, 2, 1])
    assert match_by_name(folders, MODEL, labels, "f").tolist() == [2, 0, 1, 0]


def test_a_subset_in_another_order_and_an_unknown_class():
    assert match_by_name(["Trouser", "Bag"], MODEL, torch.tensor([1, 0]), "f").tolist() == [2, 1]
    with pytest.raises(UserError, match="classes Shirt are not the model's"):
        match_by_name(["Bag", "Shirt"], MODEL, torch.tensor([0]), "f")
