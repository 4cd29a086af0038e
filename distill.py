"""Train 3D teachers and distill them into 2D students: `accelerate launch distill.py --config FILE`.

A thin entry point for launchers that take a script path; `molformer-kd distill --config FILE` runs the same
`molformer_kd.distill_command.main`. The config keys are documented there and in the README. `--help` and
`--version` are answered by `molformer_kd_launcher` without importing torch.
"""

from molformer_kd_launcher import distill_main

if __name__ == "__main__":
    distill_main()
