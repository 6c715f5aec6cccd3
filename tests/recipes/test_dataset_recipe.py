"""One recipe protocol for every data set: a third data set is one small class, and the
shared job, training and results book take it as they take MovieLens and CIFAR."""

from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from diversedistill.committee import Committee
from diversedistill.interface import HookedStudent, HookedTeacher
from diversedistill.loop.contract import NamedRows
from diversedistill.methods import DiverseDistill, DiverseDistillConfig
from diversedistill.training import TrainConfig
from diversedistill_recipes.cifar.image_recipes import ImageRecipe
from diversedistill_recipes.comparison.results import MSE, read_results
from diversedistill_recipes.jobs import DataSetRecipe, Job, ResultBook, train_student
from diversedistill_recipes.movielens.rating_recipes import MovieLensRecipe


class Regressor(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, width), nn.ReLU())
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        return self.head(self.body(x)).squeeze(-1)


def call(model, batch):
    return model(batch["x"])


class SumOfInputs:
    """A third data set: the target is the sum of four inputs; no loader of its own."""

    metric = MSE
    student_name = "tiny"
    clamp = None

    def __init__(self, rows: int = 96):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(rows, 4, generator=g)
        self.parts = [TensorDataset(x[i::3], x[i::3].sum(1)) for i in range(3)]
        self.finished: list[dict] = []

    def new_student(self, seed: int) -> HookedStudent:
        torch.manual_seed(seed)
        return HookedStudent(Regressor(8), "body", "head", call=call)

    def loaders(self, seed: int):
        def loader(part, shuffle):
            return DataLoader(NamedRows(part, ("x", "target")), batch_size=16, shuffle=shuffle,
                              generator=torch.Generator().manual_seed(seed))
        return loader(self.parts[0], True), loader(self.parts[1], False), loader(self.parts[2],
                                                                                 False)

    def train_config(self, seed: int, progress: bool) -> TrainConfig:
        return TrainConfig(max_epochs=2, seed=seed, progress=progress)

    def finish(self, student, result, info) -> None:
        self.finished.append(info)


def test_a_third_data_set_trains_alone_and_distilled_into_one_results_book(tmp_path):
    recipe = SumOfInputs()
    assert isinstance(recipe, DataSetRecipe)
    torch.manual_seed(1)
    teacher = HookedTeacher("wide", Regressor(16), inject_at="body", head="head", call=call)
    book = ResultBook(tmp_path, recipe.metric, log=lambda _line: None)
    alone, distilled = Job("student alone", 0), Job("diversedistill", 0, ("wide",))

    book.record_run(alone, train_student(recipe, alone, None, None, tmp_path, False),
                    recipe.student_name)
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    result = train_student(recipe, distilled, DiverseDistill(DiverseDistillConfig()),
                           Committee([teacher]), tmp_path, False)
    book.record_run(distilled, result, recipe.student_name)

    rows = read_results(tmp_path / "results.csv")
    assert [(r.method, r.teachers, r.metric) for r in rows] == [
        ("student alone", "tiny", "mse"), ("diversedistill", "wide", "mse")]
    assert all(math.isfinite(r.val) and math.isfinite(r.test) for r in rows)
    assert result.epochs == 2 and result.run_dir == tmp_path / "runs" / "diversedistill-wide-0"
    assert (result.run_dir / "importance.csv").is_file()  # DiverseDistill's, after the run
    assert recipe.finished[0] == {"method": "student alone"}
    distilled_info = recipe.finished[1]
    assert {k: distilled_info[k] for k in ("method", "teachers")} == {
        "method": "diversedistill", "teachers": ["wide"]}
    assert distilled_info["distillation"]["lam"] == DiverseDistillConfig().lam  # its settings
    # frozen: the teacher left the run as it came
    assert all(torch.equal(before[k], v) for k, v in teacher.model.state_dict().items())
    with open(tmp_path / "results.csv") as f:
        assert next(csv.reader(f)) == ["method", "teachers", "seed", "val_mse", "test_mse",
                                       "seconds"]


def test_movielens_and_images_meet_the_same_protocol():
    ml = SimpleNamespace(rating_scale=(1.0, 5.0))
    exp = SimpleNamespace(student_name="vit-s")
    ratings, images = MovieLensRecipe(ml, split=None), ImageRecipe(parts=None, exp=exp)
    assert isinstance(ratings, DataSetRecipe) and isinstance(images, DataSetRecipe)
    assert (ratings.metric.name, ratings.student_name, ratings.clamp) == ("mse", "mlp-s",
                                                                          (1.0, 5.0))
    assert (images.metric.name, images.student_name, images.clamp) == ("accuracy", "vit-s",
                                                                       None)
