"""A local OpenAI-compatible endpoint standing in for a vision-language model when none can be reached. Its answers
are WRITTEN BY THIS SCRIPT from the dataset's true rewards (embodied_rl.labelling.stand_in), not by a model: the
analysis query names the image whose frame has the higher true reward, the label query reads "1", "2" or "none"
from the quoted analysis. Images that are not frames of the dataset get "cannot tell" (dropped by the parser).

    python scripts/stand_in_vlm.py --task drawer-open-v3 --dataset mixed --port 8011
    # prints http://127.0.0.1:8011/v1; in another shell:
    python scripts/train.py experiment=vlm_iql env.task=metaworld/drawer-open-v3 trainer.dataset=mixed \
        llm.base_url=http://127.0.0.1:8011/v1 llm.model=stand-in llm.cache_dir=runs/stand_in_answers

Serves until Ctrl-C (exit status 0), then prints what it answered. See docs/vlm_labelling.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import asdict

from embodied_rl import cli

PREFIX = "[stand_in_vlm] "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="Meta-World task, e.g. drawer-open-v3")
    parser.add_argument("--dataset", default="mixed", help="tier of scripts/make_datasets.py or a Minari id")
    parser.add_argument("--port", type=cli.number(int, "[0, 65535]"), default=0, help="0: a free port")
    parser.add_argument("--delay-s", type=cli.number(float, ">= 0"), default=0.0, help="every answer waits this long")
    parser.add_argument(
        "--mistake", type=cli.number(float, "[0, 1]"), default=0.0, help="fraction of answers flipped (seeded)"
    )
    parser.add_argument("--seed", type=cli.number(int, ">= 0"), default=0, help="which answers --mistake flips")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from embodied_rl.data import DatasetError, dataset_id_for, load_trajectories
    from embodied_rl.envs.tasks import UnknownTaskError, canonical_task
    from embodied_rl.labelling.frame_pairs import check_frames
    from embodied_rl.labelling.stand_in import StandInVLM
    from embodied_rl.llm.local_server import OpenAICompatibleServer

    try:
        task = canonical_task(args.task)
    except UnknownTaskError as err:
        cli.fail(str(err), PREFIX)
    dataset_id = args.dataset if "/" in args.dataset else dataset_id_for(task, args.dataset)
    try:
        trajectories = load_trajectories(dataset_id)
        check_frames(trajectories, f"dataset {dataset_id!r}")
    except DatasetError as err:
        cli.fail(f"{err} (build it with scripts/make_datasets.py metaworld ... --frames 64)", PREFIX)
    stand_in = StandInVLM(trajectories, mistake=args.mistake, seed=args.seed)
    try:
        server = OpenAICompatibleServer(answer=stand_in, delay_s=args.delay_s, port=args.port)
    except OSError as err:
        cli.fail(f"cannot listen on port {args.port}: {err}", PREFIX)
    print(
        f"{PREFIX}{len(stand_in.rewards)} frames of {dataset_id} indexed; answers are written by this script from "
        "the true rewards, not by a model",
        file=sys.stderr,
    )
    print(server.url, flush=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops it, even when started in the background
    signal.signal(signal.SIGTERM, _interrupt)  # and so does `kill`
    try:
        server._http.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server._http.server_close()
    print(f"{PREFIX}answered: {json.dumps(asdict(stand_in.counts))}", file=sys.stderr)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
