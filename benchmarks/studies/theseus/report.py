"""BERT-of-Theseus: the targets over the tasks measured, at the default and at the teacher's budget."""

from __future__ import annotations

from pathlib import Path

from reporting import by_id, read_note, with_prefix


HERE = Path(__file__).resolve().parent


THESEUS_BUDGET_NOTE = read_note(HERE, "theseus_budget")
THESEUS_TEACHER_BUDGET_NOTE = read_note(HERE, "theseus_teacher_budget")


def summary(payloads: list[dict]) -> list[str]:
    """The #4 targets over the tasks measured: retention, baseline comparison, batch-1 speedup.

    Two tables: the four-task run at its default budgets (untagged files), and every task at the
    teacher's own step budget (untagged files already there, plus tagged runs; one task's runs merged).
    """
    default = {p["task"]: [p] for p in payloads if not p.get("tag")}
    at_teacher_budget: dict[str, list[dict]] = {}
    for payload in payloads:
        if payload["steps"] == payload["teacher"].get("steps"):
            at_teacher_budget.setdefault(payload["task"], []).append(payload)
    lines = ["Summary of the per-task tables below (retention = score / teacher's score; \"best theseus\" is picked on the",
             "same dev set it is scored on, so it is optimistic; the constant schedule is the preset).", ""]
    lines += _theseus_targets(default, "At the four-task run's budgets (SST-2 and TNEWS 1 epoch, MRPC and RTE 3):")
    lines += ["", THESEUS_BUDGET_NOTE, ""]
    if at_teacher_budget:
        lines += _theseus_targets(at_teacher_budget, "At the teacher's budget (3 epochs for every variant; tagged runs "
                                  "of a task merged, so \"best theseus\" picks among more variants where more ran):")
        lines += ["", THESEUS_TEACHER_BUDGET_NOTE, ""]
    return lines


def _theseus_targets(by_task: dict[str, list[dict]], title: str) -> list[str]:
    lines = [title, "", "| task | teacher | first-3-layers | theseus constant | best theseus | retention (constant) | "
             "retention (best) | best beats baseline | speedup bs1 (constant) |", "|---" * 9 + "|"]
    kept_constant, kept_best, wins = [], [], 0
    for task in sorted(by_task):
        # A task's runs merged: a later run's row replaces an earlier one with the same id.
        rows = list({row["id"]: row for payload in by_task[task] for row in payload["rows"]}.values())
        teacher = with_prefix(rows, "teacher")[0]
        baseline = by_id(rows, "first-3-layers-baseline")
        constant = by_id(rows, "theseus-constant")
        theseus = with_prefix(rows, "theseus")
        if not (baseline and constant and theseus):
            continue
        best = max(theseus, key=lambda row: row["score"])
        kept_constant.append(constant["score"] / teacher["score"])
        kept_best.append(best["score"] / teacher["score"])
        wins += best["score"] > baseline["score"]
        lines.append(f"| {task} | {100 * teacher['score']:.2f} | {100 * baseline['score']:.2f} | "
                     f"{100 * constant['score']:.2f} | {100 * best['score']:.2f} ({best['name']}) | "
                     f"{kept_constant[-1]:.1%} | {kept_best[-1]:.1%} | "
                     f"{'yes' if best['score'] > baseline['score'] else 'no'} | {constant.get('speedup_bs1', 0):.2f}x |")
    if not kept_best:
        return []
    lines.append(f"| **mean over {len(kept_best)}** | | | | | {sum(kept_constant) / len(kept_constant):.1%} | "
                 f"{sum(kept_best) / len(kept_best):.1%} | {wins} of {len(kept_best)} | |")
    return lines
