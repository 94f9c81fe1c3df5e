"""mm-ablate entry point: one Hydra job = one sweep point (see harness/launch.py for the steps).

    python sweep.py -m connector=avg_pool,attn_pool,c_abstractor,mining     # a sweep
    python sweep.py connector=mining visual_tokens=64                        # one point
    python sweep.py experiment=connectors                                    # a study declared in sweeps/experiment/

Exit status: 0 when every point finished (trained and scored every eval unit), 1 otherwise (the summary says which).
"""

import sys

import hydra
from omegaconf import DictConfig

from harness.config.store import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="sweeps", config_name="sweep")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from harness.launch import run_point
    from harness.train.distributed import launched_world

    record = run_point(cfg)
    # One point (not -m): rank 0's record is the exit status (other ranks stop after training). In a multirun the
    # summary callback decides, after every point has run (exiting here would end the sweep at its first failure).
    main_rank = launched_world()[0] == 0
    if HydraConfig.get().mode == RunMode.RUN and main_rank and (record.status != "ok" or record.eval_failures()):
        sys.exit(1)


if __name__ == "__main__":
    main()
