"""A pyfunc model for the dashboard test, logged as code: rows whose first value is negative are prompts, answered
like a generative model (text, token usage, safety flags); other rows get a number, the mean of the row; a row
whose first value is above 1e6 fails the request, as a broken model would.

MLflow copies this file into the model's artifacts, so the model server in another process loads it without
importing the tests.
"""

from __future__ import annotations

from typing import Any

from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel, PythonModelContext


class MixedModel(PythonModel):
    # No return annotation: MLflow infers the output schema from it and warns about ``Any``, under a warning filter
    # of its own that overrides the test run's. Without one, the output schema is "any" silently.
    def predict(
        self, context: PythonModelContext | None, model_input: list[list[float]], params: dict[str, Any] | None = None
    ):
        answers: list[Any] = []
        for row in model_input:
            if row and row[0] > 1e6:
                raise ValueError("input out of range")
            if row and row[0] < 0:
                answers.append(
                    {"text": "ok", "usage": {"input_tokens": len(row) * 10, "output_tokens": 5}, "safety": ["pii"]}
                )
            else:
                answers.append(sum(row) / max(len(row), 1))
        return answers


set_model(MixedModel())
