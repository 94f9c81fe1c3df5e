"""mm-ablate entry point: one Hydra job = one sweep point (see harness/launch.py for the steps).

    python sweep.py -m connector=avg_pool,attn_pool,c_abstractor,mining     # a sweep
    python sweep.py connector=mining visual_tokens=64                        # one point
    python sweep.py experiment=connectors                                    # a study declared in sweeps/experiment/
"""

import hydra
from omegaconf import DictConfig

from harness.config.store import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="sweeps", config_name="sweep")
def main(cfg: DictConfig) -> None:
    from harness.launch import run_point

    run_point(cfg)


if __name__ == "__main__":
    main()
