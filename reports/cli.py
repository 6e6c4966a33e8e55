"""`python -m reports sweep=NAME_OR_ID [decision=NAME] [decision.X=V] [against=OTHER] ...`

Arguments are `key=value` like the harness's own overrides: `decision=` and `tracking=` pick a
file from `conf/decision/` and `conf/tracking/`, dotted keys override one field. (Not a Hydra
app: `sweep` is a config group of the harness, and Hydra would read `sweep=X` as choosing it.)
Bad input is one line on stderr, exit code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.config.decision import DecisionConfig
from harness.config.errors import UserError, choice_error
from harness.config.schema import TrackingConfig

CONF = Path(__file__).resolve().parent.parent / "conf"
EXIT_USAGE, EXIT_REGRESSION = 2, 3


@dataclass
class ReportArgs:
    sweep: str = MISSING  # the sweep's id, or its name (the one that ended last)
    against: str | None = None  # compare with this sweep (id or name), cell by cell
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    out: str = "outputs/reports"
    attach: bool = True  # log the files on the sweep's parent run
    fail_on_regression: bool = False  # exit 3 when `against` finds a regression
    # no decision= or decision.* given: reuse the one recorded with the sweep's last report
    decision_given: bool = False


GROUPS = ("decision", "tracking")
REQUIRED = "sweep= is required: a sweep name (e.g. sweep=135m_gguf) or its id"
KEYS = ("sweep", "against", "out", "attach", "fail_on_regression")


def _group(name: str, choice: str) -> object:
    options = {p.stem for p in (CONF / name).glob("*.yaml")}
    if choice not in options:
        raise choice_error(name, choice, options)
    return OmegaConf.load(CONF / name / f"{choice}.yaml")


def parse(argv: Sequence[str]) -> ReportArgs:
    merged = OmegaConf.structured(ReportArgs)
    merged.decision = OmegaConf.merge(merged.decision, _group("decision", "none"))
    merged.tracking = OmegaConf.merge(merged.tracking, _group("tracking", "sqlite"))
    dotted = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or not key:
            raise UserError(f"argument {arg!r} is not key=value (e.g. sweep=135m_gguf)")
        root = key.split(".")[0]
        if root not in (*GROUPS, *KEYS):
            raise choice_error("option", key, (*GROUPS, *KEYS, "decision.<field>"))
        if key == "sweep" and not value:
            raise UserError(REQUIRED)
        if key in GROUPS:
            setattr(merged, key, OmegaConf.merge(getattr(merged, key), _group(key, value)))
        else:
            dotted.append(arg)
    if not any(a.startswith("sweep=") for a in argv):
        raise UserError(REQUIRED)
    try:
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(dotted))
        args = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        line = str(e).strip().splitlines()[0]
        where = getattr(e, "full_key", None)
        raise UserError(f"{where}: {line}" if where else line) from None
    except ValueError as e:  # a dataclass's own validation
        raise UserError(str(e)) from None
    assert isinstance(args, ReportArgs)
    args.decision_given = any(a.split("=")[0].split(".")[0] == "decision" for a in argv)
    return args


def run(args: ReportArgs) -> int:
    from harness.tracking.store import (
        SweepStore,  # MLflow loads here, after the arguments are checked
    )
    from reports.build import DECISION_TAG, build

    store = SweepStore(args.tracking)
    sweep = store.find(args.sweep)
    against = store.find(args.against, "against") if args.against else None
    recorded = sweep.run.tags.get(DECISION_TAG)
    if not args.decision_given and recorded:  # the constraint the sweep was reported under
        merged = OmegaConf.merge(OmegaConf.structured(DecisionConfig), json.loads(recorded))
        args.decision = OmegaConf.to_object(merged)  # type: ignore[assignment]
        print(
            f"reports: decision {args.decision.name}, as recorded with the sweep", file=sys.stderr
        )
    out_dir = Path(args.out) / f"{sweep.name}-{sweep.sweep_id}"
    report = build(store, sweep, args.decision, out_dir, against, args.attach)
    print(report.markdown, end="")
    where = f" and on run {sweep.run.run_id} under report/" if args.attach else ""
    print(f"reports: wrote {report.html_path}{where}", file=sys.stderr)
    regressed = report.diff is not None and report.diff.regressions
    return EXIT_REGRESSION if regressed and args.fail_on_regression else 0


def main(argv: Sequence[str] | None = None) -> None:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        sys.exit(run(args))
    except UserError as e:
        print(f"reports: error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
