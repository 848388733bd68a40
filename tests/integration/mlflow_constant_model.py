"""A pyfunc model for the MLflow tests, logged as code: it predicts, for every input row, the number it was
logged with (its ``model_config["version"]``), so a prediction says which registry version answered.

MLflow copies this file into the model's artifacts, so a model server in another process loads it without
importing the tests.
"""

from __future__ import annotations

from typing import Any

from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel, PythonModelContext


class ConstantModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        self.value = int(context.model_config["version"])

    def predict(
        self, context: PythonModelContext | None, model_input: list[list[float]], params: dict[str, Any] | None = None
    ) -> list[int]:
        return [self.value] * len(model_input)


set_model(ConstantModel())
