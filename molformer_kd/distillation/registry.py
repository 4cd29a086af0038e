"""Objectives are chosen by name from a config; each name maps to a small `nn.Module` class.

An objective module is built as `cls(teacher_config, student_config, **options)` and called as
`objective(teacher_outputs, student_outputs, batch) -> dict[str, Tensor]` returning its named loss components
(the trainer logs each component and sums them with the configured weights). Modules may own learnable
projections (student side); those parameters are optimized with the student and dropped at export.
"""

OBJECTIVES: dict[str, type] = {}


def register_objective(name: str):
    def decorator(cls):
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} is already registered by {OBJECTIVES[name].__name__}")
        OBJECTIVES[name] = cls
        return cls

    return decorator


def get_objective(name: str) -> type:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; known objectives: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]
