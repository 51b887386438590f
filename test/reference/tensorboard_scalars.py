"""Every scalar in the TensorBoard event files of a folder, read by
TensorBoard's own EventAccumulator (what its UI shows).

usage: tensorboard_scalars.py '{"dir": DIR}'
prints one JSON line: {tag: [[step, value], ...]} for every scalar tag.
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main() -> None:
    folder = json.loads(sys.argv[1])["dir"]
    events = EventAccumulator(folder, size_guidance={"scalars": 0})
    events.Reload()
    scalars = {tag: [[e.step, e.value] for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    print(json.dumps(scalars))


if __name__ == "__main__":
    main()
