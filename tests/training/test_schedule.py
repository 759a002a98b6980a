"""Short runs still learn: the warm-up takes at most 10 % of the run and a cosine schedule ends
above 0 (issue 21, item 3)."""

import pytest

from tfrestore.training import load_config
from tfrestore.training.builders import build_schedule

PEAK = 1e-3


def cosine(warmup, args=None):
    return {"type": "cosine", "warmup_steps": warmup, "args": dict(args or {})}


def lrs(schedule, steps):
    return [float(schedule(s)) for s in steps]


@pytest.mark.parametrize(
    "warmup,total,capped",
    [(1000, 30, 3), (1000, 3, 1), (1000, 1, 0), (50, 200, 20), (7, 2, 1)],
)
def test_warmup_is_capped_at_a_tenth_of_the_run_and_says_so(warmup, total, capped, capsys):
    s = build_schedule(cosine(warmup), PEAK, total)
    out = capsys.readouterr().out
    unit = "step" if capped == 1 else "steps"
    assert out.splitlines() == [
        f"[tfrestore] schedule: warm-up {warmup} -> {capped} {unit} (at most 10 % of a "
        f"{total}-step run; 'schedule.warmup_steps' is {warmup})"
    ]
    got = lrs(s, range(total))
    if capped:
        assert got[capped] == pytest.approx(PEAK, rel=1e-4)  # the peak right after the warm-up
    else:
        assert got[0] == pytest.approx(PEAK, rel=1e-4)
    assert min(got[capped:]) >= 0.01 * PEAK * (1 - 1e-3)  # every step after it learns


def test_the_short_run_of_the_issue_learns():
    """`--epochs 1 --steps-per-epoch 3` on a config warming up for 1000 steps: 2 of 3 steps at
    a real learning rate (before: all but one step in the warm-up)."""
    cfg = load_config("denoise_d2sm", overrides=["train.epochs=1", "train.steps_per_epoch=3"])
    total = cfg["train"]["epochs"] * cfg["train"]["steps_per_epoch"]
    s = build_schedule(cfg["schedule"], cfg["optimizer"]["learning_rate"], total)
    peak = cfg["optimizer"]["learning_rate"]
    assert [lr > 0.3 * peak for lr in lrs(s, range(total))] == [False, True, True]


@pytest.mark.parametrize("warmup", [0, 10])
def test_cosine_ends_at_one_percent_of_the_peak_unless_alpha_is_set(warmup):
    s = build_schedule(cosine(warmup), PEAK, 100)
    assert float(s(100)) == pytest.approx(0.01 * PEAK, rel=1e-3)
    assert min(lrs(s, range(warmup, 101))) >= 0.01 * PEAK * (1 - 1e-3)
    explicit = build_schedule(cosine(warmup, {"alpha": 0.0}), PEAK, 100)
    assert float(explicit(100)) == pytest.approx(0.0, abs=1e-9)  # the config's own alpha wins
    assert float(build_schedule(cosine(warmup, {"alpha": 0.1}), PEAK, 100)(100)) == (
        pytest.approx(0.1 * PEAK, rel=1e-3)
    )


@pytest.mark.parametrize(
    "sched",
    [
        cosine(500, {"alpha": 0.01}),  # dehaze / derain / lowlight: 500 of 50 000 steps
        {"type": "constant", "warmup_steps": 100, "args": {}},
        {"type": "step", "warmup_steps": 100, "args": {"milestones": [2000], "gamma": 0.5}},
        {"type": "exponential", "warmup_steps": 100, "args": {"decay_steps": 1000}},
    ],
)
def test_a_normal_length_run_is_unchanged(sched, capsys):
    """A warm-up within 10 % of the run is kept as configured, silently."""
    total = 5000
    s = build_schedule(sched, PEAK, total)
    assert capsys.readouterr().out == ""
    w = sched["warmup_steps"]
    got = lrs(s, [0, w // 2, w - 1, w])
    assert got[0] == pytest.approx(PEAK / w, rel=1e-2) or got[0] == 0.0
    assert got[1] < got[2] <= PEAK * (1 + 1e-4)
    assert got[3] > 0.5 * PEAK  # then the configured schedule (exponential decays from step 0)


def test_shipped_configs_keep_their_warmup(capsys):
    for name in ("dehaze", "denoise_d2sm", "denoise_ffdnet_l1"):
        cfg = load_config(name)
        total = cfg["train"]["epochs"] * cfg["train"]["steps_per_epoch"]
        build_schedule(cfg["schedule"], cfg["optimizer"]["learning_rate"], total)
    assert capsys.readouterr().out == ""
