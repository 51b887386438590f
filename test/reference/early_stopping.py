"""transformers' own best-model and early-stopping decisions for a sequence of
held-out metric values: EarlyStoppingCallback.on_evaluate, then
Trainer._determine_best_metric, in the order Trainer._maybe_log_save_evaluate
calls them (load_best_model_at_end=True; metric_for_best_model "loss", or
"rewards/accuracies" with greater_is_better, as a DPO run logs it).

usage: early_stopping.py '[{"values": [...], "greater": G, "patience": P, "threshold": T}, ...]'
prints one JSON line: for each spec, for each evaluation (steps 1, 2, ...)
until training stops, the best step so far, the callback's counter and
whether training stops there.
"""
import json
import sys
import tempfile
from types import SimpleNamespace

from transformers import EarlyStoppingCallback, Trainer, TrainerControl, TrainerState, TrainingArguments


def decide(spec: dict) -> list:
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        eval_strategy="steps",
        save_strategy="steps",
        load_best_model_at_end=True,
        metric_for_best_model="rewards/accuracies" if spec["greater"] else "loss",
        greater_is_better=spec["greater"],
        report_to=[],
    )
    state = TrainerState()
    control = TrainerControl()
    callback = EarlyStoppingCallback(spec["patience"], spec["threshold"])
    callback.on_train_begin(args, state, control)
    trainer = SimpleNamespace(args=args, state=state)
    decisions = []
    key = "eval_rewards/accuracies" if spec["greater"] else "eval_loss"
    for step, value in enumerate(spec["values"], start=1):
        state.global_step = step
        metrics = {key: value}
        callback.on_evaluate(args, state, control, metrics)
        Trainer._determine_best_metric(trainer, metrics, None)
        decisions.append(
            {
                "best": state.best_global_step,
                "misses": callback.early_stopping_patience_counter,
                "stop": bool(control.should_training_stop),
            }
        )
        if control.should_training_stop:
            break
    return decisions


def main() -> None:
    print(json.dumps([decide(spec) for spec in json.loads(sys.argv[1])]))


if __name__ == "__main__":
    main()
